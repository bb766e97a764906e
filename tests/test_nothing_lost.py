"""Issue 20, "nothing lost, nothing silently wrong": run folders, resume, concurrent writers and data.

Each test names its item of the issue. Runs are tiny (6×6 images, widths 8, two or
three epochs) and in this process, but for one subprocess: the writer that holds a
folder's lock while another tries it, then is SIGKILLed and resumed.
scripts/preemption_trials.py runs the acceptance trials (20 random kills, 10 writer races).
"""

import csv
import gzip
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx
from jax.experimental.compilation_cache import compilation_cache

import ngf
from conftest import make_tiny
from ngf.cli import main
from ngf.core.init import initialise, seed_key
from ngf.data.idx import write_idx
from ngf.models import Dense, Sequential
from ngf.runs import atomic, folder
from ngf.runs.files import LOCK_FILE
from ngf.runs.resolve import resolve_model

TESTS = Path(__file__).resolve().parent
TINY = ["--plugin", "ngf_tiny_data", "--dataset", "tiny"]
SMALL = ["--rule", "bp", "--model-opt", "widths=8", "--batch-size", "16", "--quiet"]
RUN = ["run", *TINY, *SMALL, "--epochs", "3", "--schedule", "constant"]  # constant: a resume may extend it
OPTIONS = dict(rule="bp", epochs=2, batch_size=16, model_opts={"widths": (8,)})


class Stop(Exception):
    """Stands in for a kill after some epoch."""


class StopAfter(ngf.Callbacks):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch(self, record):
        if record["epoch"] == self.epoch:
            raise Stop


def metrics(out: Path) -> list[dict]:
    """metrics.jsonl without the wall-time field."""
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (out / "metrics.jsonl").read_text().splitlines()]


def files(out: Path) -> dict:
    """Every file in ``out`` (links as links) with its bytes."""
    return {p.name: (os.readlink(p) if p.is_symlink() else p.read_bytes()) for p in sorted(out.iterdir())}


CACHE_SETTINGS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
                  "jax_persistent_cache_min_entry_size_bytes")


@pytest.fixture(scope="module", autouse=True)
def jax_cache(tmp_path_factory):
    """A persistent compilation cache for this module and its subprocess (restored afterwards):
    the same tiny programs recur in every run."""
    cache = tmp_path_factory.mktemp("jax-cache")
    before = {name: getattr(jax.config, name) for name in CACHE_SETTINGS}
    for name, value in zip(CACHE_SETTINGS, (str(cache), 0, 0)):
        jax.config.update(name, value)
    compilation_cache.reset_cache()
    yield {name.upper(): str(value) for name, value in zip(CACHE_SETTINGS, (cache, 0, 0))}
    for name, value in before.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished CLI run (bp on tiny, 3 epochs, seed 0): the reference the other runs must end as."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main([*RUN, "--out", str(out)]) == 0
    return out


def copy_of(run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(run, target)
    return target


# --- 1. --overwrite keeps the old run until the new run's first checkpoint ------------------------


def test_1_overwrite_with_bad_input_or_a_failing_rule_keeps_the_old_run(finished, tmp_path, capsys):
    out = copy_of(finished, tmp_path)
    before = files(out)
    assert main([*RUN, "--out", str(out), "--overwrite", "--devices", "1000"]) == 2
    assert "--devices must be between 1 and" in capsys.readouterr().out
    assert files(out) == before

    def broken(*args):
        raise RuntimeError("the rule fails while compiling")

    with pytest.raises(ngf.NgfError, match="raised RuntimeError"):  # past every check: the old files stay
        ngf.run(rule=ngf.LearningRule(ngf.stateless_init, broken, broken), dataset=make_tiny(), epochs=1,
                batch_size=16, model_opts={"widths": (8,)}, out=str(out), overwrite=True)
    assert files(out) == before


class Interrupt(ngf.Callbacks):
    def on_start(self, info):
        raise KeyboardInterrupt


def test_1_a_resume_that_fails_before_its_first_epoch_keeps_the_run(tmp_path):
    def broken(*args):
        raise RuntimeError("the rule fails while compiling")

    options = dict(OPTIONS, rule=ngf.LearningRule(ngf.stateless_init, broken, broken), dataset=make_tiny(),
                   out=str(tmp_path / "run"))
    with pytest.raises(KeyboardInterrupt):  # stopped before its first checkpoint: config.toml, no checkpoint
        ngf.run(callbacks=Interrupt(), **options)
    with pytest.raises(ngf.NgfError, match="raised RuntimeError: the rule fails while compiling"):
        ngf.run(resume=True, **options)
    assert (tmp_path / "run" / "config.toml").is_file()  # still resumable


# --- 2. temporary files are created exclusively, never through a planted link --------------------


def test_2_a_planted_temporary_link_is_never_written_through(finished, tmp_path):
    out, outside = copy_of(finished, tmp_path), tmp_path / "outside.txt"
    outside.write_text("keep")
    for name in ("metrics.jsonl", "summary.json", "config.toml", "checkpoint.msgpack"):
        (out / f"{name}.tmp").symlink_to(outside)
    assert main(["run", *TINY, "--resume", str(out), "--epochs", "4", "--quiet"]) == 0
    assert outside.read_text() == "keep"
    assert not any(p.is_symlink() for p in out.iterdir())  # the stale links were removed, not followed
    assert len(metrics(out)) == 4
    target = tmp_path / "x.json"
    (tmp_path / "x.json.tmp").symlink_to(outside)  # the name earlier versions wrote first
    atomic.write_text(target, "one")
    assert target.read_text() == "one" and outside.read_text() == "keep" and not target.is_symlink()
    assert [p.name for p in tmp_path.glob(".x.json.*")] == []  # no temporary file left behind


# --- 3. one writer per folder --------------------------------------------------------------------


def test_3_a_second_writer_is_refused_naming_the_holder(tmp_path, capsys):
    out = tmp_path / "held"
    out.mkdir()
    held = folder.lock(out)  # another writer, between its checks and its first file
    try:
        assert main([*RUN, "--out", str(out)]) == 2
        line = capsys.readouterr().out.strip()
        assert f"is in use by another ngf run (pid {os.getpid()})" in line and len(line.splitlines()) == 1
        assert [p.name for p in out.iterdir()] == [LOCK_FILE]
    finally:
        held.release()
    assert main([*RUN, "--out", str(out)]) == 0  # a lock file alone is not "files"
    assert LOCK_FILE not in {p.name for p in out.iterdir()}  # removed as the run ended


def _stopped_writer(out: Path, cache: dict) -> subprocess.Popen:
    """``ngf run`` in a subprocess that stops itself (SIGSTOP) at the end of epoch 2, holding ``out``."""
    env = {**os.environ, **cache, "PYTHONPATH": str(TESTS), "NGF_TEST_SIGNAL": "SIGSTOP@2"}
    proc = subprocess.Popen([sys.executable, "-m", "ngf.cli", "run", "--plugin", "ngf_signal_plugin", *RUN[1:],
                             "--out", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status = os.waitpid(proc.pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status), "the writer ended before it stopped"
    return proc


def test_3_5_a_killed_writer_leaves_its_folder_to_the_next_and_resume_if_exists_finishes_it(finished, tmp_path,
                                                                                             capsys, jax_cache):
    """A real second process: refused while the first holds the folder; after a SIGKILL the same
    command (``--resume-if-exists``) takes the folder over and ends where the uninterrupted run did."""
    out = tmp_path / "shared"
    first = _stopped_writer(out, jax_cache)
    try:
        before = files(out)
        for argv in ([*RUN, "--seed", "2", "--out", str(out), "--overwrite"], ["run", *TINY, "--resume", str(out)],
                     [*RUN, "--out", str(out), "--resume-if-exists"]):
            assert main(argv) == 2
            assert f"in use by another ngf run (pid {first.pid})" in capsys.readouterr().out
        assert files(out) == before
    finally:
        if first.poll() is None:
            first.kill()
        first.wait()
    assert (out / LOCK_FILE).exists()  # the kernel let go of the lock, the file stays
    assert main([*RUN, "--out", str(out), "--resume-if-exists"]) == 0
    assert metrics(out) == metrics(finished)


# --- 4. --log-csv keeps earlier epochs on resume -------------------------------------------------


def test_4_log_csv_holds_every_epoch_after_a_resume(tmp_path):
    out, log = tmp_path / "run", tmp_path / "log.csv"
    options = dict(OPTIONS, epochs=3, dataset=make_tiny(), out=str(out), log_csv=str(log))
    with pytest.raises(Stop):  # after epoch 2's checkpoint, before its CSV row
        ngf.run(callbacks=StopAfter(2), **options)
    ngf.run(resume=True, **options)
    with open(log) as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert [float(r["test_loss"]) for r in rows] == [r["test_loss"] for r in metrics(out)]


# --- 5. one command that survives preemption -----------------------------------------------------


def test_5_resume_if_exists_starts_fresh_or_resumes(finished, tmp_path, monkeypatch, capsys):
    command = [*RUN, "--resume-if-exists"]
    nothing = tmp_path / "never" / "run"  # killed before the folder existed
    assert main([*command, "--out", str(nothing)]) == 0
    assert metrics(nothing) == metrics(finished)
    debris = tmp_path / "debris"  # killed at its first writes: a stale lock, a probe and temporary files
    debris.mkdir()
    for name in (LOCK_FILE, ".ngf-probe-x1", ".config.toml.0123456789abcdef.tmp", "config.toml.tmp"):
        (debris / name).write_text("12345\n")
    assert main([*command, "--out", str(debris)]) == 0
    assert metrics(debris) == metrics(finished)
    assert sorted(p.name for p in debris.iterdir()) == [".ngf-probe-x1", "checkpoint.msgpack", "config.toml",
                                                         "metrics.jsonl", "summary.json"]
    cut = tmp_path / "cut"
    monkeypatch.setenv("NGF_TEST_SIGNAL", "SIGTERM@1")
    assert main([*command[:1], "--plugin", "ngf_signal_plugin", *command[1:], "--out", str(cut)]) == 143
    monkeypatch.delenv("NGF_TEST_SIGNAL")
    assert main([*command, "--out", str(cut)]) == 0
    assert metrics(cut) == metrics(finished)
    capsys.readouterr()
    assert main([*command, "--out", str(cut), "--lr", "0.5"]) == 2  # not the stored run's options
    assert "cannot resume" in capsys.readouterr().out
    assert main([*command, "--out", str(cut), "--overwrite"]) == 2


# --- 6. a resume refuses options that would change the result ------------------------------------


@pytest.mark.parametrize("option", [["--rule", "fa"], ["--lr", "0.5"], ["--seed", "1"], ["--init", "he"],
                                    ["--batch-size", "32"], ["--model-opt", "widths=9"],
                                    ["--optimizer", "sgd"]])
def test_6_resume_with_changed_options_is_refused(option, finished, capsys):
    before = files(finished)
    assert main(["run", *TINY, "--resume", str(finished), *option]) == 2
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"error: cannot resume {finished}: ") and len(line.splitlines()) == 1
    assert files(finished) == before


def test_6_resume_may_extend_the_epochs_and_the_python_api_checks_too(finished, tmp_path):
    out = copy_of(finished, tmp_path)
    with pytest.raises(ngf.NgfError, match="rule was 'bp' in that run, not 'fa'"):
        ngf.run(**{**OPTIONS, "rule": "fa"}, dataset="tiny", out=str(out), resume=True,
                registry=ngf.load_registry(extra_plugins=["ngf_tiny_data"]))
    assert main(["run", *TINY, "--resume", str(out), "--epochs", "4", "--quiet"]) == 0
    assert len(metrics(out)) == 4 and metrics(out)[:3] == metrics(finished)


# --- 7. every bit of a 64-bit seed counts --------------------------------------------------------


def test_7_seeds_do_not_alias_modulo_2_to_the_32():
    data = lambda key: jax.random.key_data(key).tolist()
    for seed in (0, 1, 12345, 2 ** 32 - 1):  # today's keys, so today's runs
        assert data(seed_key(seed)) == data(jax.random.key(seed))
    assert data(seed_key(2 ** 32)) != data(seed_key(0))
    assert data(seed_key(2 ** 32 - 1)) != data(seed_key(-1))
    keys = {tuple(data(seed_key(s))) for s in (0, -1, 2 ** 32, 2 ** 32 - 1, 2 ** 63 - 1, -2 ** 63, 2 ** 32 + 1, 1)}
    assert len(keys) == 8
    tiny, registry = make_tiny(), ngf.load_registry()
    models = [resolve_model(ngf.RunConfig(seed=seed, model_opts={"widths": (4,)}), tiny, registry)[0]
              for seed in (0, 2 ** 32)]  # the model's own initialisation
    kernels = [np.asarray(m.layers[0].linear.kernel[...]) for m in models]
    assert not np.array_equal(*kernels)
    drawn = [initialise(({"w": np.zeros((3, 2), np.float32)},), "he", seed)[0]["w"] for seed in (-1, 2 ** 32 - 1)]
    assert not np.array_equal(*drawn)  # --init draws from the seed too


# --- 8. compare and sweep refuse duplicates ------------------------------------------------------


@pytest.mark.parametrize("argv, message", [
    (["compare", "--rules", "bp,bp", "--datasets", "tiny"], "--rules lists bp twice"),
    (["compare", "--rules", "bp", "--datasets", "tiny", "--seeds", "0,0"], "--seeds lists 0 twice"),
    (["compare", "--rules", "bp", "--datasets", "tiny,tiny"], "--datasets lists tiny twice"),
    (["sweep", "--rules", "lra", "--datasets", "tiny", "--grid", "batch-size=16", "--grid", "batch_size=32"],
     "--grid batch-size and --grid batch_size both set batch_size"),
    (["sweep", "--rules", "lra", "--datasets", "tiny", "--grid", "beta=0.1", "--grid", "rule.beta=0.2"],
     "--grid beta and --grid rule.beta both set rule.beta"),
    (["sweep", "--rules", "lra", "--datasets", "tiny", "--grid", "lr=1e-3,1e-3"], "--grid lr lists 1e-3 twice"),
])
def test_8_duplicate_runs_are_refused(argv, message, tmp_path, capsys):
    out = tmp_path / "experiment"
    assert main([*argv, "--plugin", "ngf_tiny_data", "--epochs", "1", "--quiet", "--out", str(out)]) == 2
    assert message in capsys.readouterr().out
    assert not out.exists()


# --- 9. images and labels are what ngf handles deliberately --------------------------------------


def _float_labels_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir()
    for prefix, n in (("train", 64), ("t10k", 20)):
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 6, 6), dtype=np.uint8))
        labels = (rng.integers(0, 3, n) + 0.7).astype(">f4")  # 2.7 would have trained as class 2
        raw = bytes([0, 0, 0x0D, 1]) + struct.pack(">I", n) + labels.tobytes()
        (root / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(raw))
    return root


def test_9_float_labels_and_misscaled_images_are_refused(tmp_path, capsys):
    bad = _float_labels_folder(tmp_path / "floats")
    assert main(["run", "--data-dir", str(bad), "--quiet", "--out", str(tmp_path / "run")]) == 2
    assert f"{bad}/train-labels-idx1-ubyte.gz: labels must be integers, found float32" in capsys.readouterr().out
    tiny = make_tiny()
    with pytest.raises(ngf.NgfError, match="x_train holds floats from 0 to 255"):
        ngf.run(dataset=tiny._replace(x_train=tiny.x_train.astype(np.float32)), **OPTIONS)
    with pytest.raises(ngf.NgfError, match="x_test is int32"):
        ngf.run(dataset=tiny._replace(x_test=tiny.x_test.astype(np.int32)), **OPTIONS)


def test_9_float_images_in_0_1_are_taken_as_they_are():
    """The same pixels as uint8 and as floats in [0, 1] train alike (XLA may divide by 255 as a product
    with 1/255, hence a tolerance; dividing the floats by 255 again would change the losses by 1e-2)."""
    tiny = make_tiny()
    scaled = tiny._replace(**{k: getattr(tiny, k).astype(np.float32) / np.float32(255) for k in ("x_train", "x_test")})
    as_pixels, as_floats = (ngf.run(dataset=d, **{**OPTIONS, "epochs": 1}) for d in (tiny, scaled))
    for key in ("train_loss", "test_loss"):
        assert as_floats[key] == pytest.approx(as_pixels[key], rel=1e-5)


# --- 10. options are never truncated or ignored while recorded -----------------------------------


def test_10_fractional_or_boolean_widths_and_options_of_objects_are_refused(tmp_path, capsys):
    toml = tmp_path / "run.toml"
    toml.write_text("[model_opts]\nwidths = [true, 16.9]\n")
    assert main(["run", *TINY, "--config", str(toml), "--quiet", "--out", str(tmp_path / "a")]) == 2
    assert "model option widths expects an integer, got True" in capsys.readouterr().out
    tiny = make_tiny()
    with pytest.raises(ngf.NgfError, match="widths expects an integer, got 16.7"):
        ngf.run(dataset=tiny, model_opts={"widths": [16.7]})
    with pytest.raises(ngf.NgfError, match="rule_opts set a registered rule's options"):
        ngf.run(dataset=tiny, rule=ngf.LearningRule(ngf.stateless_init, None, None), rule_opts={"beta": 0.1})
    model = Sequential([Dense(36, 3, rngs=nnx.Rngs(0))])
    with pytest.raises(ngf.NgfError, match="model_opts set a registered model's options"):
        ngf.run(dataset=tiny, model=model, model_opts={"widths": (8,)})
    assert not (tmp_path / "a").exists()


# --- 11. the arrays a run donates are its own ----------------------------------------------------


def test_11_a_given_model_survives_and_a_rule_state_may_hold_the_parameters():
    tiny = make_tiny()
    model = Sequential([Dense(36, 3, rngs=nnx.Rngs(0))])
    first = ngf.run(model=model, dataset=tiny, rule="bp", epochs=1, batch_size=16)
    assert model(np.zeros((1, 36), np.float32)).shape == (1, 3)  # its arrays were not donated
    assert ngf.run(model=model, dataset=tiny, rule="bp", epochs=1, batch_size=16)["history"][0]["test_loss"] == \
        first["history"][0]["test_loss"]
    bp = ngf.load_registry().get("rule", "bp").factory()
    keeps_start = bp._replace(init=lambda key, net, params: {"start": params}, name="keeps-start")
    summary = ngf.run(model=Sequential([Dense(36, 3, rngs=nnx.Rngs(0))]), dataset=tiny, rule=keeps_start,
                      epochs=1, batch_size=16)
    assert summary["history"][0]["test_loss"] == first["history"][0]["test_loss"]


# --- 12. lifecycle hooks see a read-only config --------------------------------------------------


class Shortener:
    """A watcher that tries to cut the run to one epoch."""

    __name__ = "shortener"

    @ngf.hookimpl
    def ngf_run_start(self, config):
        config.epochs = 1


class Problems(ngf.Callbacks):
    def __init__(self):
        self.problems = []

    def on_problem(self, message):
        self.problems.append(message)


def test_12_a_hook_cannot_change_the_run(tmp_path):
    callbacks, out = Problems(), tmp_path / "run"
    registry = ngf.load_registry(extra_plugins=[Shortener()], autoload=False)
    summary = ngf.run(registry=registry, callbacks=callbacks, dataset=make_tiny(), out=str(out), **OPTIONS)
    assert summary["epochs_completed"] == 2 and len(metrics(out)) == 2
    assert "epochs = 2" in (out / "config.toml").read_text()
    assert len(callbacks.problems) == 1 and "read-only" in callbacks.problems[0]


# --- 13. summaries and figures say what they did -------------------------------------------------


def test_13_wall_seconds_count_every_process_of_a_resumed_run(tmp_path):
    options = dict(OPTIONS, epochs=3, dataset=make_tiny(), out=str(tmp_path / "run"))
    with pytest.raises(Stop):
        ngf.run(callbacks=StopAfter(2), **options)
    time.sleep(0.05)
    summary = ngf.run(resume=True, **options)
    first_part = sum(r["seconds"] for r in summary["history"][:2])
    assert summary["wall_seconds"] >= summary["wall_seconds_last"] + first_part
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["wall_seconds_last"] > 0


def test_13_plot_into_a_folder_and_a_negative_norms_batch_are_refused(finished, tmp_path, capsys):
    folder_out = tmp_path / "figures"
    folder_out.mkdir()
    assert main(["plot", str(finished), "--out", str(folder_out)]) == 2
    assert f"--out {folder_out} is a folder" in capsys.readouterr().out
    assert not (tmp_path / "figures.png").exists()
    assert main(["norms", *TINY[:2], str(finished), "--batch", "-5", "--out", str(tmp_path / "n.png")]) == 2
    assert "--batch must be a positive integer, got -5" in capsys.readouterr().out
    assert not (tmp_path / "n.png").exists()
