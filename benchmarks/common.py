"""What every section shares: settings, data, side-by-side timing, the machine's description."""

from __future__ import annotations

import dataclasses
import datetime
import gzip
import os
import platform
import statistics
import struct
import sys
import time
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

BUILTIN_RULES = ("bp", "fa", "dfa", "lra", "dtp", "local-search", "kp", "drtp", "pepita", "pc", "ddtp", "dkp", "local-loss",
                 "ff", "fg", "ep")
FULL_EPOCH = 60000  # MNIST's training set: seconds on a subset are also given per full epoch


@dataclasses.dataclass
class Settings:
    """One benchmark run; ``None`` fields are filled by :func:`resolve` from the backend and ``quick``."""

    sections: tuple = ("handwritten", "rules", "paths", "torch", "memory", "scaling", "throughput")
    quick: bool = False
    epochs: int | None = None  # timed epochs, after ``warmup``
    warmup: int = 1
    batch_size: int = 64
    mlp_width: int = 512  # the mlp's two hidden layers (512: the registered default; DESIGN.md §5 timed 256)
    lr: float = 1e-3
    data: str = "mnist"  # or "synthetic": random MNIST-shaped images (tests, no data at hand)
    mlp_examples: int | None = None  # training examples per epoch (a fixed subset, the same for all)
    cnn_examples: int | None = None
    rules: tuple = ()  # () → every built-in rule that is registered
    widths: tuple = (256, 512, 1024, 2048, 4096)
    batches: tuple = (32, 64, 128, 256, 512, 1024)
    scaling_examples: int | None = None
    json: str | None = None
    png: str | None = "docs/img/benchmark-scaling.png"
    threads: int | None = None  # PyTorch's intra-op threads; None → every core


def cores() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve(settings: Settings, platform_name: str) -> Settings:
    """Fill the defaults: full data on an accelerator, fixed subsets on a CPU (quick: smaller)."""
    cpu = platform_name == "cpu"
    q = settings.quick
    defaults = {
        "epochs": 3 if q else 5,
        "mlp_examples": (6400 if q else FULL_EPOCH) if cpu else FULL_EPOCH,
        "cnn_examples": (3200 if q else 15000) if cpu else (20000 if q else FULL_EPOCH),
        "scaling_examples": (2000 if q else 6400) if cpu else (15000 if q else FULL_EPOCH),
        "threads": cores(),
    }
    filled = {k: v for k, v in defaults.items() if getattr(settings, k) is None}
    if q and settings.sections == Settings.sections:  # the engine's paths are a tuning aid
        filled["sections"] = tuple(s for s in settings.sections if s != "paths")
    if q and settings.widths == Settings.widths:
        filled["widths"] = (256, 1024, 4096)
    if q and settings.batches == Settings.batches:
        filled["batches"] = (32, 128, 512)
    return dataclasses.replace(settings, **filled)


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Training images (uint8 NHWC) and labels: the first ``n`` of MNIST's training set, or random."""

    x: np.ndarray
    y: np.ndarray
    source: str

    def take(self, n: int) -> "Dataset":
        """The first ``n`` examples (every contender of a model trains on the same ones)."""
        n = min(n, len(self.x))
        return Dataset(self.x[:n], self.y[:n], self.source)


def read_idx(path: Path) -> np.ndarray:
    """One IDX file, plain or gzipped (a few lines, so that the PyTorch side never imports ngf or JAX)."""
    raw = bytearray(gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes())
    ndim = raw[3]
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def data_folders(name: str) -> list[Path]:
    """Where ngf looks for a dataset without the Hub: $NGF_DATA_DIR/<name>/, /usr/share/datasets/<name>/."""
    roots = [p for p in os.environ.get("NGF_DATA_DIR", "").split(os.pathsep) if p] + ["/usr/share/datasets"]
    return [Path(root) / name for root in roots]


def load_data(kind: str, n_synthetic: int = FULL_EPOCH) -> Dataset:
    """MNIST's training split from the local search path (never the Hub), or random MNIST-shaped data."""
    if kind == "synthetic":
        rng = np.random.default_rng(0)
        return Dataset(rng.integers(0, 256, (n_synthetic, 28, 28, 1), dtype=np.uint8),
                       rng.integers(0, 10, n_synthetic).astype(np.int32), "synthetic")
    for folder in data_folders(kind):
        files = [folder / f"train-{part}-idx{d}-ubyte{gz}" for part, d in (("images", 3), ("labels", 1))
                 for gz in (".gz", "")]
        images = next((f for f in files[:2] if f.is_file()), None)
        labels = next((f for f in files[2:] if f.is_file()), None)
        if images and labels:
            x = read_idx(images)
            return Dataset(x.reshape(x.shape + (1,) * (4 - x.ndim)), read_idx(labels).astype(np.int32),
                           f"{kind} training split ({folder})")
    raise SystemExit(f"{kind} not found in {', '.join(map(str, data_folders(kind)))}: set NGF_DATA_DIR "
                     f"to the folder holding {kind}/, or pass --data synthetic")


class Contender(Protocol):
    """Something that trains one epoch, synchronously, each time it is called."""

    def __call__(self, epoch: int) -> None: ...


def interleave(contenders: dict[str, Contender], warmup: int, epochs: int,
               log: Callable[[str], None] = print) -> dict[str, list[float]]:
    """Seconds per epoch of each contender, run in turn epoch by epoch.

    The order rotates every round, so that a burst of load from elsewhere on a shared
    machine, or a contender that leaves caches cold, hits every contender alike. The
    first ``warmup`` rounds (compilation included) are dropped.
    """
    names = list(contenders)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(warmup + epochs):
        shift = round_ % len(names) if names else 0
        last = {}
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            contenders[name](round_)
            last[name] = time.perf_counter() - start
            if round_ >= warmup:
                times[name].append(last[name])
        label = "warm-up" if round_ < warmup else f"epoch {round_ - warmup + 1}/{epochs}"
        log(f"  {label}: " + ", ".join(f"{n} {last[n]:.2f}s" for n in names))
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def machine() -> dict:
    """What the numbers were measured on."""
    import jax
    device = jax.devices()[0]
    info = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(),
        "processor": platform.processor() or platform.machine(),
        "cores": cores(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "python": sys.version.split()[0],
        "jax": jax.__version__,
        "platform": device.platform,
        "device": device.device_kind,
        "device_count": jax.device_count(),
        "command": " ".join([os.path.basename(sys.executable), "-m", "benchmarks"] + sys.argv[1:]),
    }
    try:
        import torch
        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    return info
