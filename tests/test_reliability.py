"""Reliability (issue 8): divergence, interruption, kills at random moments, determinism, safety.

Runs here are tiny (6×6 images, widths 8) and share a persistent JAX compilation
cache, in this process and in the subprocesses, so that a repeated program loads
its compiled executable instead of compiling it again.
"""

import json
import multiprocessing
import multiprocessing.forkserver
import os
import random
import re
import shlex
import signal
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from flax import serialization
from jax.experimental.compilation_cache import compilation_cache

import ngf
from ngf.cli import main
from ngf.runs import checkpoint
from ngf_tiny_data import tiny

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"
TINY = ["--plugin", "ngf_tiny_data", "--dataset", "tiny"]
SMALL = ["--model-opt", "widths=8", "--batch-size", "16", "--quiet"]


@pytest.fixture(scope="module")
def jax_cache(tmp_path_factory):
    """A persistent compilation cache for this module (restored afterwards)."""
    folder = tmp_path_factory.mktemp("jax-cache")
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
             "jax_persistent_cache_min_entry_size_bytes")
    before = {name: getattr(jax.config, name) for name in names}
    for name, value in zip(names, (str(folder), 0, 0)):
        jax.config.update(name, value)
    compilation_cache.reset_cache()
    yield folder
    for name, value in before.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()


def strict_json(text: str):
    """JSON that must not hold NaN or Infinity tokens."""
    def refuse(token):
        raise AssertionError(f"non-standard JSON token {token}")
    return json.loads(text, parse_constant=refuse)


def metrics(folder: Path) -> list[dict]:
    """metrics.jsonl without the wall-time field."""
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in strict_json(line).items() if k != "seconds"} for line in lines]


def checkpoint_epoch(folder: Path) -> int:
    return int(serialization.msgpack_restore((folder / checkpoint.CHECKPOINT).read_bytes())["epoch"])


# --- divergence ---------------------------------------------------------------------------------


def nan_after(steps: int) -> ngf.LearningRule:
    """Backprop whose updates turn to NaN from step ``steps`` on."""
    def init(key, net, params):
        return jnp.zeros((), jnp.int32)

    def compute_targets(net, params, trace, labels, state):
        return ngf.propagate_errors(net, params, trace, ngf.output_error(trace[-1].pre, labels)), state

    def local_update(net, params, trace, deltas, state):
        poison = jnp.where(state >= steps, jnp.nan, 1.0)
        updates = ngf.updates_from_deltas(net, params, trace, deltas)
        return jax.tree.map(lambda u: u * poison, updates), state + 1

    return ngf.LearningRule(init, compute_targets, local_update)


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tiny_data, tmp_path, jax_cache):
    out = tmp_path / "run"
    with pytest.raises(ngf.Diverged) as caught:  # 96 examples / 16 = 6 steps per epoch: NaN in epoch 2
        ngf.run(rule=nan_after(8), dataset=tiny_data, epochs=4, batch_size=16, model_opts={"widths": (8,)},
                out=str(out))
    exc = caught.value
    assert isinstance(exc, ngf.NgfError) and exc.exit_code == 3
    assert "diverged in epoch 2 of 4" in str(exc) and "NaN" in str(exc) and "\n" not in str(exc)
    summary = strict_json((out / "summary.json").read_text())
    assert summary == exc.summary
    assert summary["status"] == "diverged" and summary["diverged_epoch"] == 2
    assert summary["epochs_completed"] == 1 and len(summary["history"]) == 1
    assert summary["train_loss"] is None  # NaN is written as null
    assert checkpoint_epoch(out) == 1  # not overwritten with the bad state
    assert [m["epoch"] for m in metrics(out)] == [1]


def test_huge_learning_rate_exits_3_with_a_diverged_summary(tmp_path, capsys, jax_cache):
    out = tmp_path / "run"
    assert main(["run", *TINY, "--rule", "bp", "--lr", "1e6", "--epochs", "3", *SMALL, "--out", str(out)]) == 3
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "diverged in epoch 1 of 3" in lines[0]
    summary = strict_json((out / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["epochs_completed"] == 0
    assert not (out / checkpoint.CHECKPOINT).exists()


# --- interruption -------------------------------------------------------------------------------


EPOCHS = 6
SEARCH = ["run", *TINY, "--rule", "local-search", "--epochs", str(EPOCHS), "--batch-size", "4",
          "--model-opt", "widths=8", "--steps-per-call", "1", "--quiet"]  # its random key is rule state


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory, jax_cache):
    """The uninterrupted local-search run that interrupted ones must end equal to."""
    out = tmp_path_factory.mktemp("whole") / "run"
    assert main([*SEARCH, "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("name, status", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signal_ends_the_run_cleanly_and_resume_finishes_it(name, status, whole_run, tmp_path, monkeypatch,
                                                              capsys):
    out = tmp_path / "run"
    monkeypatch.setenv("NGF_TEST_SIGNAL", f"{name}@2")
    # Python's own Ctrl-C handler, even where the suite was started with SIGINT ignored (`cmd &` in a script)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        assert main([*SEARCH, "--plugin", "ngf_signal_plugin", "--out", str(out)]) == status
    finally:
        signal.signal(signal.SIGINT, previous)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].endswith(f"after epoch 2 of {EPOCHS}; resume with: ngf run --plugin ngf_tiny_data "
                             f"--plugin ngf_signal_plugin --resume {out}")
    summary = strict_json((out / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["epochs_completed"] == 2
    assert checkpoint_epoch(out) == 2 and len(metrics(out)) == 2
    monkeypatch.delenv("NGF_TEST_SIGNAL")
    assert main(["run", *TINY, "--plugin", "ngf_signal_plugin", "--resume", str(out), "--quiet"]) == 0
    assert strict_json((out / "summary.json").read_text())["status"] == "completed"
    assert metrics(out) == metrics(whole_run)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the CLI put the default handler back


STARTED = b"[test] calling ngf's main\n"


def _child(argv, log_path):
    """A forked ngf process, its output to ``log_path``."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.write(1, STARTED)  # a signal before this line meets Python's defaults, not ngf
    sys.exit(main(argv))


@pytest.fixture(scope="module")
def processes(jax_cache):
    """New processes forked from a server that imported ngf once (rather than 3 s of imports each).

    The server reads the compilation cache's settings from the environment as it imports JAX.
    """
    settings = {"JAX_COMPILATION_CACHE_DIR": str(jax_cache), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
    before = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["jax", "ngf.cli", "ngf_tiny_data"])
    multiprocessing.forkserver.ensure_running()
    for name, value in before.items():
        if value is None:
            del os.environ[name]
        else:
            os.environ[name] = value
    return context


def _lines(path: Path) -> int:
    try:
        return len(path.read_text().splitlines())
    except OSError:
        return 0


def test_kills_at_random_moments_then_resume_equals_the_uninterrupted_run(tmp_path, whole_run, processes):
    """SIGKILL, SIGINT or SIGTERM at random moments, a resume after each: the end is bit for bit the same.

    Kills 0, 2 and 4 come a random time into the epoch after the last checkpoint or
    the one after it (mid-epoch, mid-write); kills 1 and 3 at any moment of a
    process's life (loading, compiling, training, writing). Local search keeps its
    random key in its rule state, so the randomness must come back too. The
    uninterrupted run, in this process, fills the compilation cache the others share.
    """
    rng = random.Random(8)
    epochs, argv, whole, cut = EPOCHS, SEARCH, whole_run, tmp_path / "cut"
    pace = sorted(strict_json((whole / "summary.json").read_text())["epoch_seconds"])[epochs // 2]
    lifetime = None  # a process's life, once measured
    expected = {signal.SIGKILL: -signal.SIGKILL, signal.SIGINT: 130, signal.SIGTERM: 143}
    resume = ["run", "--plugin", "ngf_tiny_data", "--resume", str(cut)]
    said = re.compile(r"interrupted: (?:after epoch (\d+) of \d+|before the run started); "
                      r"(?:resume with: (.*)|nothing to resume)$", re.M)
    for kill in range(5):
        done = _lines(cut / "metrics.jsonl")
        command = resume if (cut / "config.toml").is_file() else [*argv, "--out", str(cut), "--overwrite"]
        sig, log = rng.choice(list(expected)), tmp_path / f"kill{kill}.log"
        log.write_text("")  # a process killed before it opens its log wrote nothing
        spawned = time.perf_counter()
        proc = processes.Process(target=_child, args=(command, str(log)))
        proc.start()
        if lifetime is None or kill % 2 == 0 and done < epochs - 1:
            target, deadline = min(done + rng.randrange(2), epochs - 2), time.time() + 60
            while _lines(cut / "metrics.jsonl") <= target and proc.is_alive() and time.time() < deadline:
                time.sleep(0.002)
            if lifetime is None:
                lifetime = time.perf_counter() - spawned + (epochs - target) * pace
            time.sleep(rng.uniform(0, pace))
        else:
            time.sleep(rng.uniform(0, lifetime))
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:  # it ended first
            pass
        proc.join()
        text = log.read_text()
        if STARTED.decode() in text:
            assert proc.exitcode in (0, expected[sig]), text
        else:  # killed while the forked process was still starting: the signal's default action
            assert proc.exitcode in (-sig, 1), text  # 1: Python's KeyboardInterrupt in multiprocessing's bootstrap
        if proc.exitcode in (130, 143):
            message = said.search(text)
            assert message, text
            if message.group(1) is not None:
                summary = strict_json((cut / "summary.json").read_text())
                assert summary["status"] == "interrupted"
                assert summary["epochs_completed"] == int(message.group(1))
            if message.group(2) is not None:
                assert message.group(2) == shlex.join(["ngf", *resume])
    assert main([*resume, "--quiet"]) == 0
    a, b = (strict_json((d / "summary.json").read_text()) for d in (cut, whole))
    assert a["status"] == b["status"] == "completed"
    assert a["test_accuracy"] == b["test_accuracy"]
    assert metrics(cut) == metrics(whole)


# --- determinism --------------------------------------------------------------------------------


#: one rule of each kind whose step could differ between two runs: plain, a step key and rule parameters,
#: random candidates applied directly, a relaxation, per-example tangents through its own passes
RANDOM_KINDS = ("bp", "dtp", "local-search", "pc", "fg")


@pytest.mark.parametrize("rule", RANDOM_KINDS)
def test_same_seed_same_metrics(rule, tmp_path, jax_cache):
    """The same run twice through ngf.run gives identical metrics.jsonl files, but for the wall time
    ("seconds"); every rule's determinism on the engine is ngf.testing's check (tests/test_contract.py)."""
    data = tiny(0, 96, 40)
    for name in ("a", "b"):
        ngf.run(rule=rule, dataset=data, epochs=2, batch_size=16, seed=5, model_opts={"widths": (8,)},
                out=str(tmp_path / name))
    assert metrics(tmp_path / "a") == metrics(tmp_path / "b")
    assert len(metrics(tmp_path / "a")) == 2


@pytest.mark.parametrize("rule", [kind for kind in RANDOM_KINDS if kind != "dtp"])  # fg: a key and rule parameters too
def test_same_seed_same_metrics_on_resnet_nodes(rule, tmp_path, jax_cache):
    """The same on resnet's graph of nodes (skips, sums, a projection), one short epoch each, through
    ngf.run; every rule's determinism on the engine is ngf.testing's check (tests/test_contract.py)."""
    data = tiny(0, 32, 16)
    opts = {"stem": 3, "widths": (3, 4), "blocks": (1,)}
    for name in ("a", "b"):
        ngf.run(rule=rule, model="resnet", dataset=data, epochs=1, batch_size=16, seed=5, model_opts=opts,
                out=str(tmp_path / name))
    assert metrics(tmp_path / "a") == metrics(tmp_path / "b")


# --- safety -------------------------------------------------------------------------------------

UNSAFE = re.compile(r"\bimport (c?pickle|dill|shelve|marshal|joblib)\b|\bfrom (c?pickle|dill|shelve|marshal|joblib)\b"
                    r"|allow_pickle\s*=\s*True|torch\.load\(|\bpickle\.loads?\(|\beval\(|\bexec\(|yaml\.load\("
                    r"|\.load_pickle")


def test_nothing_is_unpickled_or_executed():
    """No pickle, no np.load (it can unpickle), no eval/exec, in ngf's sources or the example plugin."""
    roots = [SRC, TESTS.parent / "examples"]
    found = [f"{path}:{n}: {line.strip()}" for root in roots for path in root.rglob("*.py")
             for n, line in enumerate(path.read_text().splitlines(), 1) if UNSAFE.search(line)]
    assert found == []


def test_overwrite_replaces_only_ngfs_files(tmp_path, capsys, jax_cache):
    out = tmp_path / "run"
    argv = ["run", *TINY, "--rule", "bp", "--epochs", "1", *SMALL, "--out", str(out)]
    assert main(argv) == 0
    (out / "notes.txt").write_text("mine")
    outside = tmp_path / "outside.json"
    outside.write_text("keep")
    (out / "summary.json").unlink()
    (out / "summary.json").symlink_to(outside)  # a link out of the folder is replaced, not written through
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert main(argv) == 2 and "--overwrite" in capsys.readouterr().out  # refused without --overwrite
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert main(argv + ["--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "mine" and outside.read_text() == "keep"
    assert not (out / "summary.json").is_symlink()
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.msgpack", "config.toml", "metrics.jsonl",
                                                     "notes.txt", "summary.json"]


def test_failure_before_the_first_epoch_leaves_no_folder(tiny_data, tmp_path):
    def broken(*args):
        raise RuntimeError("the rule fails while compiling")  # reported as one NgfError line

    rule = ngf.LearningRule(ngf.stateless_init, broken, broken)
    out = tmp_path / "new" / "run"
    with pytest.raises(ngf.NgfError, match="raised RuntimeError: the rule fails while compiling"):
        ngf.run(rule=rule, dataset=tiny_data, epochs=1, batch_size=16, model_opts={"widths": (8,)}, out=str(out))
    assert not (tmp_path / "new").exists()  # the parent this run created is gone too


@pytest.mark.parametrize("dtype", ["O", "U2"])
def test_crafted_checkpoints_are_refused(dtype, tmp_path):
    """Object arrays (which would need unpickling) and arrays of text in a checkpoint: a clean error."""
    import msgpack
    import numpy as np

    leaf = msgpack.ExtType(1, msgpack.packb(((2,), dtype, b"\0" * 16)))  # flax's ndarray extension type
    blob = msgpack.packb({"format": checkpoint.FORMAT, "epoch": 1, "history": "[]", "leaves": {"00000": leaf}})
    (tmp_path / checkpoint.CHECKPOINT).write_bytes(blob)
    with pytest.raises(ngf.NgfError, match="not a readable checkpoint"):
        checkpoint.check_readable(tmp_path)
        checkpoint.load(tmp_path, {"w": np.zeros(2, np.float32)})


def test_experiment_tables_mark_diverged_runs():
    """A sweep goes on past a diverged variant; its row says so, and its lost losses (null) show as nan."""
    from ngf.experiments.results import Result, long_table

    good = {"status": "completed", "train_accuracy": 0.9, "test_accuracy": 0.8, "train_loss": 0.1,
            "test_loss": 0.2, "wall_seconds": 1.0}
    bad = {**good, "status": "diverged", "train_loss": None, "test_loss": None}
    table = long_table([Result("bp", "tiny", 0, "a", good), Result("bp lr=1e6", "tiny", 0, "b", bad)])
    assert "| bp lr=1e6 (1 diverged) | tiny | 1 |" in table and "| nan |" in table
