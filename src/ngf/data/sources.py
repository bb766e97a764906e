"""Where datasets come from: folders on a search path, ngf's cache, and the Hugging Face Hub (README.md, Data).

A dataset name resolves, in order, to ``--data-dir``, ``$NGF_DATA_DIR/<name>/``
(several folders may be given, separated by ``os.pathsep``), ``/usr/share/datasets/<name>/``,
ngf's cache (``cache_dir()/<name>/``, ``$NGF_CACHE_DIR`` or ``~/.cache/ngf``), and then the
Hub. ``fetch_tables`` is the one way to the Hub for every dataset (``datasets``' own cache
when the Hub does not answer); what it gives is converted once into ngf's cache: IDX
files for an ``IdxDataset`` (here), ``arrays.npz`` for the others (``ngf.data.hub``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import socket
import tempfile
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from ngf.core.errors import NgfError
from ngf.data.idx import read_idx, write_idx
from ngf.data.splits import DataSplits
from ngf.data.tables import tables_to_splits

SPLIT_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
SYSTEM_DIR = Path("/usr/share/datasets")
HUB_TIMEOUT_S = 3.0


def cache_dir() -> Path:
    """Where Hub downloads are cached as IDX files."""
    return Path(os.environ.get("NGF_CACHE_DIR") or Path.home() / ".cache" / "ngf") / "datasets"


def _idx_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def _has_any(folder: Path) -> bool:
    return folder.is_dir() and any(_idx_file(folder, stem) for stem in SPLIT_FILES.values())


def read_idx_folder(folder: Path, n_classes: int) -> DataSplits:
    """Read the four IDX files of a folder; a missing or corrupt one is named."""
    arrays = {}
    for key, stem in SPLIT_FILES.items():
        path = _idx_file(folder, stem)
        if path is None:
            raise NgfError(f"missing file {folder / (stem + '.gz')} (a dataset folder holds "
                           f"{', '.join(s + '.gz' for s in SPLIT_FILES.values())})")
        arrays[key] = read_idx(path)
        if key.startswith("y_") and not np.issubdtype(arrays[key].dtype, np.integer):  # 2.7 is no class
            raise NgfError(f"{path}: labels must be integers, found {arrays[key].dtype}")
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim == 3:
            arrays[f"x_{split}"] = x = x[..., None]
        if x.ndim != 4 or y.ndim != 1 or len(x) != len(y):
            raise NgfError(f"dataset in {folder}: {split} images {x.shape} and labels {y.shape} do not match")
        if y.size and (y.min() < 0 or y.max() >= n_classes):
            raise NgfError(f"dataset in {folder}: {split} labels must lie in [0, {n_classes})")
    return DataSplits(arrays["x_train"], arrays["y_train"].astype(np.int32),
                      arrays["x_test"], arrays["y_test"].astype(np.int32), n_classes)


def search_path(name: str) -> list[Path]:
    """The folders searched for ``name`` after ``--data-dir``, in order."""
    env = [Path(p) / name for p in os.environ.get("NGF_DATA_DIR", "").split(os.pathsep) if p]
    return env + [SYSTEM_DIR / name, cache_dir() / name]


def hub_reachable(timeout: float = HUB_TIMEOUT_S) -> bool:
    """Whether the Hugging Face Hub answers within ``timeout`` seconds (offline mode: no)."""
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


class Unfetched(Exception):
    """The Hub did not give a dataset: ``reason`` (one line), and ``cache``, ``datasets``' cache that was read."""

    def __init__(self, reason: str, cache: str):
        super().__init__(reason)
        self.reason, self.cache = reason, cache


@contextlib.contextmanager
def _offline(datasets_config):
    """``datasets`` in offline mode (its cache only) for the duration: the Hub did not answer."""
    before = datasets_config.HF_HUB_OFFLINE
    datasets_config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets_config.HF_HUB_OFFLINE = before


def fetch_tables(repo_id: str, config: str = "") -> dict:
    """``{split: datasets.Dataset}`` of ``datasets.load_dataset(repo_id, config)``: from the Hub, or from
    ``datasets``' cache when the Hub does not answer; ``Unfetched`` when neither has it.

    ``repo_id`` may also be a local folder that ``datasets`` can load.
    """
    online = Path(repo_id).exists() or hub_reachable()  # fail fast: datasets waits ~20 s for an unreachable Hub
    import datasets  # only when the Hub is needed: it takes seconds to import

    try:
        with contextlib.nullcontext() if online else _offline(datasets.config):
            return dict(datasets.load_dataset(repo_id, config or None))
    except Exception as exc:  # noqa: BLE001 - any failure of datasets is one line
        reason = "the Hugging Face Hub is unreachable" if not online else " ".join(str(exc).split())[:300]
        raise Unfetched(reason, str(datasets.config.HF_DATASETS_CACHE)) from None


def write_idx_folder(target: Path, data: DataSplits) -> None:
    """Write ``data`` to the folder ``target`` as the four IDX files (labels as uint8), whole or not at all."""
    if data.n_classes > 256:
        raise NgfError(f"{target}: {data.n_classes} classes do not fit IDX labels of one byte")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        for key, stem in SPLIT_FILES.items():
            array = getattr(data, key)
            write_idx(staging / f"{stem}.gz", array.astype(np.uint8) if key.startswith("y_") else array)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@dataclasses.dataclass(frozen=True)
class IdxDataset:
    """A dataset of four IDX files, found on the search path or fetched from the Hub."""

    name: str
    hub_id: str | None = None
    n_classes: int = 10

    def __call__(self, data_dir=None) -> DataSplits:
        """Load the dataset, looking in ``data_dir`` first (the folder itself or ``<data_dir>/<name>``)."""
        if data_dir is not None:
            data_dir = Path(data_dir)
            for folder in (data_dir, data_dir / self.name):
                if _has_any(folder):
                    return read_idx_folder(folder, self.n_classes)
            raise NgfError(f"no IDX files for dataset {self.name!r} in {data_dir} or {data_dir / self.name}")
        folders = search_path(self.name)
        for folder in folders:
            if _has_any(folder):
                return read_idx_folder(folder, self.n_classes)
        return self._from_hub(folders)

    def _from_hub(self, searched: list[Path]) -> DataSplits:
        looked = ", ".join(str(f) for f in searched)
        how = (f"put the four IDX .gz files in a folder and pass --data-dir, or set NGF_DATA_DIR "
               f"to the folder that holds {self.name}/")
        if self.hub_id is None:
            raise NgfError(f"dataset {self.name!r} not found (looked in {looked}); {how}")
        try:
            tables = fetch_tables(self.hub_id)
        except Unfetched as exc:
            raise NgfError(f"dataset {self.name!r} not found locally (looked in {looked}, datasets' cache "
                           f"{exc.cache}) and could not be fetched from {self.hub_id!r} ({exc.reason}); "
                           f"{how}") from None
        target = cache_dir() / self.name
        write_idx_folder(target, tables_to_splits(tables, f"{self.name} ({self.hub_id})"))
        return read_idx_folder(target, self.n_classes)
