"""The dataset ``npz``: a local NumPy ``.npz`` file in Keras' ``mnist.npz`` layout.

The file holds ``x_train``, ``y_train``, ``x_test`` and ``y_test`` (images as uint8
[N, H, W] or [N, H, W, C], integer labels) and optionally ``n_classes``. Its path
comes from ``--data-dir FILE`` or, failing that, ``$NGF_NPZ_PATH``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

import ngf

PATH_ENV = "NGF_NPZ_PATH"
KEYS = ("x_train", "y_train", "x_test", "y_test")


def _images(x: np.ndarray, path: Path, split: str) -> np.ndarray:
    if x.dtype != np.uint8 or x.ndim not in (3, 4):
        raise ngf.NgfError(f"{path}: x_{split} must be uint8 [N, H, W] or [N, H, W, C], "
                           f"got {x.dtype} {x.shape}")
    return x[..., None] if x.ndim == 3 else x


def _labels(y: np.ndarray, n: int, path: Path, split: str) -> np.ndarray:
    if y.ndim != 1 or len(y) != n or not np.issubdtype(y.dtype, np.integer):
        raise ngf.NgfError(f"{path}: y_{split} must be {n} integer labels, got {y.dtype} {y.shape}")
    return y.astype(np.int32)


def read_npz(path: Path) -> ngf.DataSplits:
    """Read and check a ``.npz`` file; a missing key or a bad shape is named."""
    try:
        with np.load(path) as arrays:
            found = {k: arrays[k] for k in arrays.files}
    except (OSError, ValueError) as exc:
        raise ngf.NgfError(f"cannot read {path}: {exc}") from None
    missing = [k for k in KEYS if k not in found]
    if missing:
        raise ngf.NgfError(f"{path} lacks {', '.join(missing)} (it needs {', '.join(KEYS)})")
    x_train, x_test = (_images(found[f"x_{s}"], path, s) for s in ("train", "test"))
    y_train = _labels(found["y_train"], len(x_train), path, "train")
    y_test = _labels(found["y_test"], len(x_test), path, "test")
    n_classes = int(found.get("n_classes", max(y_train.max(), y_test.max()) + 1))
    return ngf.DataSplits(x_train, y_train, x_test, y_test, n_classes)


def npz_dataset(data_dir=None) -> ngf.DataSplits:
    """The ``npz`` dataset: read ``data_dir`` (a ``.npz`` file) or ``$NGF_NPZ_PATH``."""
    given = data_dir or os.environ.get(PATH_ENV)
    if not given:
        raise ngf.NgfError(f"dataset 'npz' needs a file: pass --data-dir FILE.npz or set {PATH_ENV}")
    path = Path(given)
    if not path.is_file():
        raise ngf.NgfError(f"dataset 'npz': no file {path}")
    return read_npz(path)
