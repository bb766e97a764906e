"""Checkpoints: every epoch, safe against a kill mid-write, and a resumed run equals an uninterrupted one."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import ngf
import ngf.testing
from ngf.cli import main
from ngf.host.registry import load_registry
from ngf.runs import checkpoint
from ngf.core.errors import NgfError

TESTS = Path(__file__).resolve().parent
REGISTRY = load_registry()


class Stop(Exception):
    """Stands in for a kill after some epoch."""


class StopAfter(ngf.Callbacks):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch(self, record):
        if record["epoch"] == self.epoch:
            raise Stop


def _run(tiny_data, out, **kw):
    opts = dict(dataset=tiny_data, epochs=3, batch_size=16, lr=1e-2, model_opts={"widths": (8, 8)})
    return ngf.run(out=str(out), **{**opts, **kw})


def test_resumed_run_equals_uninterrupted(tiny_data, tmp_path):
    """lra-E changes its rule state (E) every step, so the rule state must come back too."""
    rule, opts = "lra", {"learn_e": True}
    whole = _run(tiny_data, tmp_path / "whole", rule=rule, rule_opts=opts)
    with pytest.raises(Stop):
        _run(tiny_data, tmp_path / "cut", rule=rule, rule_opts=opts, callbacks=StopAfter(2))
    assert len((tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()) == 2
    resumed = _run(tiny_data, tmp_path / "cut", rule=rule, rule_opts=opts, resume=True)
    for key in ("train_loss", "test_loss", "test_accuracy", "train_accuracy"):
        assert [h[key] for h in resumed["history"]] == [h[key] for h in whole["history"]]
    lines = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]


@pytest.mark.parametrize("rule_name", sorted(n for n in REGISTRY.rules if REGISTRY.get("rule", n).plugin.startswith(
    "ngf.plugins.")))  # an installed plugin's rules (examples/ngf-signsym's) run the kit in their own tests
def test_every_rule_resumes_exactly(rule_name):
    """ngf.testing's check: saved after an epoch, restored into a fresh engine and continued, each rule's
    run ends bit for bit where the uninterrupted run does (the engine's state, not a run's files)."""
    rule = REGISTRY.get("rule", rule_name).factory()
    ngf.testing.check_checkpoint_round_trip(rule, "mlp", name=rule_name, rank_promotion="raise")


def test_checkpoint_round_trips_keys_and_arrays():
    state = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "key": jax.random.key(3),
             "n": np.int32(5), "none": None}
    restored, epoch, history = checkpoint.decode(checkpoint.encode(state, 2, [{"epoch": 1}, {"epoch": 2}]),
                                                 state)
    assert epoch == 2 and history == [{"epoch": 1}, {"epoch": 2}]
    np.testing.assert_array_equal(restored["w"], state["w"])
    assert jax.random.key_data(restored["key"]).tolist() == jax.random.key_data(state["key"]).tolist()
    assert restored["none"] is None


def test_checkpoint_is_not_pickle_and_needs_a_matching_run():
    blob = checkpoint.encode({"w": np.ones(3, np.float32)}, 1, [])
    assert b"numpy.core" not in blob and not blob.startswith(b"\x80")  # msgpack, not a pickle stream
    with pytest.raises(NgfError, match="does not match"):
        checkpoint.decode(blob, {"w": np.ones(3), "b": np.ones(2)})
    with pytest.raises(NgfError, match="shape"):
        checkpoint.decode(blob, {"w": np.ones(4)})


def test_damaged_temp_file_leaves_the_checkpoint_usable(tiny_data, tmp_path):
    with pytest.raises(Stop):
        _run(tiny_data, tmp_path, rule="bp", callbacks=StopAfter(1))
    (tmp_path / (checkpoint.CHECKPOINT + ".tmp")).write_bytes(b"\x00half a write")  # killed mid-write
    assert len(_run(tiny_data, tmp_path, rule="bp", resume=True)["history"]) == 3
    (tmp_path / checkpoint.CHECKPOINT).write_bytes(b"garbage")
    with pytest.raises(NgfError, match="not a readable checkpoint"):
        _run(tiny_data, tmp_path, rule="bp", resume=True)


def test_resume_without_a_checkpoint_is_a_clean_error(tiny_data, tmp_path):
    with pytest.raises(NgfError, match="does not exist"):
        _run(tiny_data, tmp_path, rule="bp", resume=True)


def test_sigkill_during_an_epoch_then_resume(tmp_path):
    """The CLI end to end: SIGKILL a run after its second epoch, resume it, compare.

    Local search draws its candidates from a key in its rule state, so this also checks
    that the random state comes back.
    """
    epochs = 40  # a tiny epoch takes milliseconds on an idle machine: with 5, all could end between two polls
    argv = ["run", "--plugin", "ngf_tiny_data", "--dataset", "tiny", "--rule", "local-search", "--epochs", str(epochs),
            "--batch-size", "8", "--model-opt", "widths=8", "--steps-per-call", "1", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    proc = subprocess.Popen([sys.executable, "-m", "ngf.cli", *argv, "--out", str(killed)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics, deadline = killed / "metrics.jsonl", time.time() + 60
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 2):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 2 <= len(metrics.read_text().splitlines()) < epochs, "the run was not killed mid-way"
    assert main(["run", "--plugin", "ngf_tiny_data", "--resume", str(killed), "--quiet"]) == 0
    assert main([*argv, "--out", str(whole)]) == 0
    a, b = (json.loads((d / "summary.json").read_text()) for d in (killed, whole))
    assert [h["test_loss"] for h in a["history"]] == [h["test_loss"] for h in b["history"]]
    assert a["test_accuracy"] == b["test_accuracy"]
