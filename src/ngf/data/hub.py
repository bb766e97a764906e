"""Image datasets from Hugging Face ``datasets``: ``hf:OWNER/NAME``, ``disk:PATH``, ``cifar10``, ``cifar100``.

A Hub dataset is fetched by ``ngf.data.sources.fetch_tables`` (``datasets``' own cache
when the Hub does not answer within a few seconds; failing that, the error says where
ngf looked), converted once to arrays and cached as an ``.npz`` file in ngf's cache
(``ngf.data.sources.cache_dir``): ``hf/OWNER/NAME/arrays.npz``, or ``NAME/arrays.npz``
for a named dataset. ``.npz`` files are read with ``allow_pickle=False``: nothing is unpickled.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from ngf.core.errors import NgfError
from ngf.data.folder import load_folder
from ngf.data.sources import Unfetched, cache_dir, fetch_tables, search_path
from ngf.data.splits import DataSplits
from ngf.data.tables import tables_to_splits

ARRAYS = ("x_train", "y_train", "x_test", "y_test")
REPO_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")


def read_arrays(path: Path) -> DataSplits:
    """The ``DataSplits`` saved in an ``.npz`` file by ``write_arrays``; a bad file is named."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            arrays = [saved[key] for key in ARRAYS]
            n_classes = int(saved["n_classes"])
    except (OSError, ValueError, KeyError) as exc:
        raise NgfError(f"corrupt dataset file {path}: {' '.join(str(exc).split())}") from None
    return DataSplits(*arrays, n_classes)


def write_arrays(path: Path, data: DataSplits) -> None:
    """Save ``data`` to ``path`` (.npz) whole or not at all: a temporary file, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=path.name + ".", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            np.savez(out, **dict(zip(ARRAYS, data[:4])), n_classes=np.int64(data.n_classes))
        os.replace(staging, path)
    finally:
        Path(staging).unlink(missing_ok=True)


def fetch(repo_id: str, source: str, looked: str, config: str = "") -> dict:
    """``fetch_tables(repo_id, config)``; when it fails, one line naming where ngf looked (``looked``) too."""
    try:
        return fetch_tables(repo_id, config)
    except Unfetched as exc:
        raise NgfError(f"dataset {source} not found (looked in {looked}, datasets' cache {exc.cache}) and could "
                       f"not be fetched from {repo_id!r} on the Hub: {exc.reason}") from None


def _options_key(config: str, image: str, label: str, test_fraction: float) -> str:
    given = [f"{k}={v}" for k, v in (("config", config), ("image", image), ("label", label)) if v]
    given += [f"test_fraction={test_fraction:g}"] if float(test_fraction) != 0.2 else []
    return re.sub(r"[^\w.=-]", "_", "-".join(["arrays", *given])) + ".npz"


def load_hub(repo_id: str, data_dir=None, config: str = "", image: str = "", label: str = "",
             test_fraction: float = 0.2) -> DataSplits:
    """A Hugging Face Hub image-classification dataset, cached as arrays after its first use.

    Args:
      config: the dataset's configuration, for a dataset that has several (default: its only one).
      image: the column holding the images (default: the one with an Image feature, or named image/img).
      label: the column holding the labels (default: one named label/labels, or the one ClassLabel column).
      test_fraction: the part of each class held out for testing when there is no test or validation split.
    """
    source = f"hf:{repo_id}"
    if not REPO_ID.match(repo_id) or ".." in repo_id.split("/"):
        raise NgfError(f"--dataset {source}: expected hf:OWNER/NAME, a Hugging Face dataset id")
    cached = cache_dir() / "hf" / repo_id / _options_key(config, image, label, test_fraction)
    if cached.is_file():
        return read_arrays(cached)
    splits = fetch(repo_id, source, f"ngf's cache {cached.parent}", config)
    data = tables_to_splits(splits, source, image, label, test_fraction)
    write_arrays(cached, data)
    return data


def load_disk(path: str, data_dir=None, image: str = "", label: str = "", test_fraction: float = 0.2) -> DataSplits:
    """A dataset saved with ``datasets``' ``save_to_disk`` (a ``DatasetDict``, or one ``Dataset``).

    Args:
      image: the column holding the images (default: the one with an Image feature, or named image/img).
      label: the column holding the labels (default: one named label/labels, or the one ClassLabel column).
      test_fraction: the part of each class held out for testing when there is no test or validation split.
    """
    source, folder = f"disk:{path}", Path(path).expanduser()
    if not folder.is_dir():
        raise NgfError(f"dataset {source}: {folder} is not a folder")
    if not any((folder / name).is_file() for name in ("dataset_dict.json", "state.json")):
        raise NgfError(f"dataset {source}: {folder} is not a dataset saved with save_to_disk "
                       "(no dataset_dict.json or state.json)")
    _check_not_empty(folder, source)
    import datasets

    try:
        loaded = datasets.load_from_disk(str(folder))
    except Exception as exc:  # noqa: BLE001 - a damaged folder is one line naming it
        raise NgfError(f"dataset {source}: cannot load {folder}: {' '.join(str(exc).split())[:300]}") from None
    splits = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
    return tables_to_splits(splits, source, image, label, test_fraction)


def _check_not_empty(folder: Path, source: str) -> None:
    """Refuse a saved dataset with an empty split: ``datasets`` itself fails on one with an IndexError."""
    states = [folder / "state.json"] + sorted(folder.glob("*/state.json"))
    for state in (path for path in states if path.is_file()):
        try:
            files = json.loads(state.read_text()).get("_data_files")
        except (OSError, ValueError, AttributeError):
            continue  # damaged: datasets' own error names it
        if files == []:
            split = f"split {state.parent.name!r}" if state.parent != folder else "the dataset"
            raise NgfError(f"dataset {source}: {split} is empty (no examples; {state} lists no data files)")


def _local(folder: Path, label: str) -> DataSplits | None:
    """A copy in ``folder``: ngf's ``arrays.npz``, a ``save_to_disk`` folder, or train/ and test/ image folders."""
    if (folder / "arrays.npz").is_file():
        return read_arrays(folder / "arrays.npz")
    if (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file():
        return load_disk(str(folder), label=label)
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        return load_folder(str(folder))
    return None


@dataclasses.dataclass(frozen=True)
class HubImageDataset:
    """A named image dataset: a local copy on the search path first, then the Hub (cached as arrays)."""

    name: str
    hub_id: str
    label: str = ""  # the Hub dataset's label column, where it has several

    def __call__(self, data_dir=None) -> DataSplits:
        """Load it from ``data_dir`` (the folder or ``<data_dir>/<name>``), the search path, or the Hub."""
        folders = [Path(data_dir), Path(data_dir) / self.name] if data_dir is not None else search_path(self.name)
        for folder in folders:
            found = _local(folder, self.label) if folder.is_dir() else None
            if found is not None:
                return found
        looked = ", ".join(str(f) for f in folders)
        if data_dir is not None:
            raise NgfError(f"no copy of dataset {self.name!r} in {looked} (a folder holds arrays.npz, a "
                           "save_to_disk dataset, or train/ and test/ folders of class folders)")
        splits = fetch(self.hub_id, repr(self.name), looked)
        data = tables_to_splits(splits, f"{self.name} ({self.hub_id})", label=self.label)
        write_arrays(cache_dir() / self.name / "arrays.npz", data)
        return data
