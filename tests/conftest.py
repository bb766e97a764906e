"""Shared fixtures: the data search path, tiny datasets, strict JAX promotion, one compile cache."""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

# The suite compiles far more than it computes (tiny models, a few steps each): XLA's CPU backend at its
# lowest optimisation level compiled the contract tests with 30% less CPU time and ran the training-heavy
# modules (pc, stacked, kp) in the same time; XLA's older (LLVM IR) fusion emitters instead of its MLIR
# ones compile each program in 40% less CPU time again (the contract and recompilation checks measured).
# The runs and subprocesses the tests start inherit both. A test of bits that only XLA's default
# optimisation gives runs in a subprocess with ``product_xla_env()``.
# Set before anything starts JAX's backend (the thread count below does): XLA reads its flags once, then.
TEST_XLA_FLAG = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
os.environ["XLA_FLAGS"] = " ".join(filter(None, [os.environ.get("XLA_FLAGS"), TEST_XLA_FLAG]))

if os.environ.get("PYTEST_XDIST_WORKER"):  # each of pytest-xdist's workers computes with one XLA thread:
    from ngf.runs.threads import apply  # two workers on two cores, not four threads (a tenth faster measured)

    apply(1)

import jax  # noqa: E402 - after XLA's flags and the thread count, which are read when JAX's backend starts
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from ngf.data.splits import DataSplits  # noqa: E402
from ngf.runs.resolve import LOADED  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("NGF_DATA_DIR", str(ROOT.parent / "shared" / "datasets"))
jax.config.update("jax_numpy_rank_promotion", "raise")
if "NGF_COMPILE_CACHE" not in os.environ:  # one persistent compile cache for the session and its subprocesses
    COMPILE_CACHE = tempfile.mkdtemp(prefix="ngf-test-jax-")  # (README.md, Start-up: measured against off)
    os.environ["NGF_COMPILE_CACHE"] = COMPILE_CACHE
    atexit.register(shutil.rmtree, COMPILE_CACHE, ignore_errors=True)


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
    """Keep Hub downloads of every test in its own cache folder, and its datasets loaded by itself.

    Compiled programs are not downloads: ``$NGF_COMPILE_CACHE`` keeps them in one folder
    for the whole session (above), so a test does not compile again what another compiled.
    """
    monkeypatch.setenv("NGF_CACHE_DIR", str(tmp_path / "ngf-cache"))
    LOADED.clear()


def product_xla_env() -> dict:
    """This process's environment with XLA's flags as ``ngf`` runs them (the suite's own flag removed)."""
    flags = os.environ.get("XLA_FLAGS", "").replace(TEST_XLA_FLAG, "").strip()
    return {**os.environ, "XLA_FLAGS": flags}


#: the longest modules (seconds of test time on a quiet 2-core machine, --durations=0), run first: xdist's
#: loadscope hands modules out in collection order, so a long module collected last keeps one worker busy
#: while the other has finished (22 s of 515 measured); longest first leaves the short ones to even out
LONGEST_FIRST = ("test_contract", "test_locality", "test_ray", "test_distributed", "test_reliability", "test_kp",
                 "test_startup", "test_checkpoint", "test_signals", "test_rule_interface", "test_reliability_b",
                 "test_workers", "test_stacked", "test_conv_rules", "test_experiments", "test_rgb_models")


def pytest_collection_modifyitems(session, config, items):
    """Modules of ``LONGEST_FIRST`` first, in that order; the others after them, as collected."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(Path(str(item.fspath)).stem, len(rank)))  # stable: order kept within
