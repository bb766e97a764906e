"""Shared fixtures: the data search path, tiny datasets, strict JAX promotion."""

import os
from pathlib import Path

import jax
import numpy as np
import pytest

from ngf.data.splits import DataSplits

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("NGF_DATA_DIR", str(ROOT.parent / "shared" / "datasets"))
jax.config.update("jax_numpy_rank_promotion", "raise")


def real_data_available(name: str = "mnist") -> bool:
    """Whether the real IDX files are on the data search path."""
    return any((Path(p) / name).is_dir() for p in os.environ["NGF_DATA_DIR"].split(os.pathsep))


def make_tiny(n_train=96, n_test=40, shape=(6, 6, 1), n_classes=3, seed=0) -> DataSplits:
    """A random image dataset small enough for contract tests."""
    rng = np.random.default_rng(seed)
    return DataSplits(
        rng.integers(0, 256, (n_train,) + shape, dtype=np.uint8),
        rng.integers(0, n_classes, n_train).astype(np.int32),
        rng.integers(0, 256, (n_test,) + shape, dtype=np.uint8),
        rng.integers(0, n_classes, n_test).astype(np.int32),
        n_classes,
    )


@pytest.fixture
def tiny_data() -> DataSplits:
    """A tiny random dataset (6×6 images, 3 classes)."""
    return make_tiny()


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Keep Hub downloads of every test in its own cache folder."""
    monkeypatch.setenv("NGF_CACHE_DIR", str(tmp_path / "ngf-cache"))
