"""Issue 32, part B: an experiment folder has one writer, a resume continues exactly the run that was started
or refuses, the run's own files are never a target, and damaged files are named.

Each test names its item of the issue. Runs are tiny (6×6 images, widths 8, two or three epochs).
"""

import errno
import gzip
import os
import shutil
import socket
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from ngf.cli import main
from ngf.data.idx import write_idx
from ngf.experiments import runner
from ngf.runs import compilecache, folder
from ngf.runs.configfile import read as read_config
from ngf.runs.files import LOCK_FILE

PLUGIN = ["--plugin", "ngf_tiny_data"]
TINY = [*PLUGIN, "--batch-size", "16", "--model-opt", "widths=8", "--quiet"]
RUN = ["run", *TINY, "--dataset", "tiny", "--rule", "bp", "--epochs", "2", "--schedule", "constant"]


def one_line_error(capsys, *words) -> str:
    """The one line a refused command printed, checked to contain ``words``."""
    output = capsys.readouterr()
    text = (output.out + output.err).strip()
    assert len(text.splitlines()) == 1 and "Traceback" not in text, text
    for word in words:
        assert word in text, text
    return text


# --- 1. an experiment folder is one writer's at a time -------------------------------------------


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["here", "workers"])
def test_1_a_second_compare_into_a_folder_in_use_is_refused_and_the_first_results_stay(tmp_path, capsys, workers):
    out = tmp_path / "cmp"
    argv = ["compare", "--rules", "bp,fa", "--datasets", "tiny", "--epochs", "1", "--out", str(out), *TINY]
    assert main(argv) == 0
    before = {p.name: p.read_bytes() for p in (out / "results.csv", out / "results.md")}
    assert not (out / LOCK_FILE).exists()  # released when the command ended
    held = folder.lock(out)  # another compare or sweep writing the folder
    try:
        capsys.readouterr()
        assert main(argv[:-1] + ["--epochs", "2", "--overwrite", "--quiet", *workers]) == 2
        one_line_error(capsys, f"{out} is in use by another ngf run (pid {os.getpid()})")
        assert main(["sweep", "--rule", "bp", "--datasets", "tiny", "--grid", "lr=0.1,0.01", "--epochs", "1",
                     "--out", str(out), *TINY, *workers]) == 2
    finally:
        held.release()
    assert {p.name: p.read_bytes() for p in (out / "results.csv", out / "results.md")} == before


def test_1_a_compare_holds_its_folder_while_its_runs_train(tmp_path, monkeypatch):
    out, seen = tmp_path / "cmp", []
    real = runner._run_here

    def watching(*args, **kwargs):  # while a run trains, a second writer cannot take the folder
        with pytest.raises(Exception, match="is in use by another ngf run") as info:
            folder.lock(out)
        seen.append(str(info.value))
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "_run_here", watching)
    assert main(["compare", "--rules", "bp", "--datasets", "tiny", "--epochs", "1", "--out", str(out), *TINY]) == 0
    assert len(seen) == 1 and not (out / LOCK_FILE).exists()


# --- 2. a resume continues exactly the run that was started, or refuses ----------------------------


def idx_folder(path: Path, seed: int) -> Path:
    """A tiny dataset of four IDX files; another ``seed`` gives other images."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True)
    write_idx(path / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (64, 6, 6), dtype=np.uint8))
    write_idx(path / "train-labels-idx1-ubyte.gz", rng.integers(0, 3, 64).astype(np.uint8))
    write_idx(path / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (20, 6, 6), dtype=np.uint8))
    write_idx(path / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 3, 20).astype(np.uint8))
    return path


def test_2_a_resume_on_other_data_is_refused(tmp_path, monkeypatch, capsys):
    for name, seed in (("a", 0), ("b", 1)):
        idx_folder(tmp_path / name / "mnist", seed)
    monkeypatch.setenv("NGF_DATA_DIR", str(tmp_path / "a"))
    out = tmp_path / "run"
    argv = ["run", "--dataset", "mnist", "--rule", "bp", "--epochs", "1", "--batch-size", "16", "--model-opt",
            "widths=8", "--schedule", "constant", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    monkeypatch.setenv("NGF_DATA_DIR", str(tmp_path / "b"))
    capsys.readouterr()
    assert main(["run", "--resume", str(out), "--epochs", "2", "--quiet"]) == 2
    one_line_error(capsys, "dataset 'mnist' now loads other data than the run trained on")
    monkeypatch.setenv("NGF_DATA_DIR", str(tmp_path / "a"))
    assert main(["run", "--resume", str(out), "--epochs", "2", "--quiet"]) == 0  # its own data: it continues


def test_2_an_edited_config_or_a_foreign_checkpoint_is_refused(tmp_path, capsys):
    first, other = tmp_path / "first", tmp_path / "other"
    assert main([*RUN, "--out", str(first)]) == 0
    assert main([*RUN, "--lr", "0.01", "--out", str(other)]) == 0
    edited = tmp_path / "edited"
    shutil.copytree(first, edited)
    config = edited / "config.toml"
    config.write_text(config.read_text().replace("lr = 0.001", "lr = 0.005"))
    capsys.readouterr()
    assert main(["run", *PLUGIN, "--resume", str(edited), "--epochs", "3", "--quiet"]) == 2
    one_line_error(capsys, "its config.toml does not describe the run its checkpoint holds")
    shutil.copy(other / "checkpoint.msgpack", first / "checkpoint.msgpack")
    assert main(["run", *PLUGIN, "--resume", str(first), "--epochs", "3", "--quiet"]) == 2
    one_line_error(capsys, "the checkpoint copied from another run")


# --- 9. damaged files are named ------------------------------------------------------------------


def test_9_a_checkpoint_with_flipped_bytes_is_reported_damaged(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*RUN, "--out", str(out)]) == 0
    path = out / "checkpoint.msgpack"
    blob = bytearray(path.read_bytes())
    for at in range(len(blob) - 400, len(blob) - 300, 7):  # inside the last arrays' bytes
        blob[at] ^= 0x40
    path.write_bytes(bytes(blob))
    capsys.readouterr()
    assert main(["run", *PLUGIN, "--resume", str(out), "--epochs", "3", "--quiet"]) == 2
    one_line_error(capsys, f"{path} is damaged")


def test_2_a_resume_below_the_finished_epochs_or_changing_a_cosine_runs_length_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*RUN, "--schedule", "cosine", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["run", *PLUGIN, "--resume", str(out), "--epochs", "1", "--quiet"]) == 2
    one_line_error(capsys, "it has finished 2 already (give --epochs 2 or more)")
    assert main(["run", *PLUGIN, "--resume", str(out), "--epochs", "3", "--quiet"]) == 2
    one_line_error(capsys, "its cosine schedule was planned for 2")
    constant = tmp_path / "constant"
    assert main([*RUN, "--schedule", "constant", "--out", str(constant)]) == 0
    assert main(["run", *PLUGIN, "--resume", str(constant), "--epochs", "3", "--quiet"]) == 0  # extended
    assert main(["run", *PLUGIN, "--resume", str(constant), "--epochs", "2", "--quiet"]) == 2


def test_2_an_overwrite_run_interrupted_before_its_first_epoch_does_not_offer_the_old_run(tmp_path, capsys,
                                                                                          monkeypatch):
    out = tmp_path / "run"
    assert main([*RUN, "--out", str(out)]) == 0
    before = (out / "metrics.jsonl").read_bytes()

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr("ngf.runs.loop._compile", interrupted)
    capsys.readouterr()
    assert main([*RUN, "--lr", "0.5", "--out", str(out), "--overwrite"]) == 130
    line = one_line_error(capsys, "nothing of this run to resume", "run the same command again")
    assert "--resume" not in line and (out / "metrics.jsonl").read_bytes() == before


# --- 3. the run's own files are never a target ----------------------------------------------------


@pytest.mark.parametrize("name", ["checkpoint.msgpack", "metrics.jsonl", "config.toml", "summary.json", ".ngf.lock"])
def test_3_log_csv_naming_one_of_the_runs_own_files_is_refused(tmp_path, capsys, name):
    out = tmp_path / "run"
    assert main([*RUN, "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert main(["run", *PLUGIN, "--resume", str(out), "--epochs", "3", "--log-csv", str(out / name)]) == 2
    one_line_error(capsys, f"is the run's own {name}")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_3_the_lock_is_never_written_through_a_hard_link_planted_in_the_folder(tmp_path):
    out, outside = tmp_path / "run", tmp_path / "outside.txt"
    out.mkdir()
    outside.write_text("keep this")
    os.link(outside, out / LOCK_FILE)
    held = folder.lock(out)
    held.release()
    assert outside.read_text() == "keep this"
    (out / LOCK_FILE).mkdir()
    with pytest.raises(Exception, match="is a directory where ngf keeps its lock file"):
        folder.lock(out)


def test_2_a_run_resumed_by_the_same_compare_with_workers_keeps_its_threads(tmp_path):
    out = tmp_path / "cmp"
    argv = ["compare", "--rules", "bp,fa", "--datasets", "tiny", "--epochs", "2", "--schedule", "constant",
            "--workers", "2", "--out", str(out), *TINY]
    assert main(argv) == 0
    run = out / "tiny" / "fa" / "seed0"
    threads = read_config(run / "config.toml")["threads"]
    (run / "summary.json").unlink()  # as if the comparison had been stopped before fa ended: it resumes
    assert main(argv) == 0
    assert read_config(run / "config.toml")["threads"] == threads


# --- 8. Ray never hangs on a bad address -----------------------------------------------------------


def test_8_a_ray_address_where_nothing_listens_fails_at_once_before_any_run(tmp_path, capsys):
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    assert main(["compare", "--rules", "bp", "--datasets", "tiny", "--epochs", "1", "--executor", "ray",
                 "--ray-address", f"127.0.0.1:{port}", "--out", str(tmp_path / "cmp"), *TINY]) == 2
    assert time.monotonic() - started < 30
    one_line_error(capsys, f"cannot reach Ray at 127.0.0.1:{port}")
    assert not (tmp_path / "cmp").exists()


def test_9_damaged_compile_cache_entries_are_dropped_and_recompiled_once(tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    monkeypatch.setenv("NGF_COMPILE_CACHE", str(cache))
    monkeypatch.setattr(compilecache, "_dropped", [])  # this process has dropped none yet
    assert main([*RUN, "--out", str(tmp_path / "a")]) == 0
    entries = sorted(cache.glob("*-cache"))
    assert entries
    for entry in entries:  # every entry damaged past its first bytes
        blob = bytearray(entry.read_bytes())
        blob[16:] = bytes(b ^ 0x5A for b in blob[16:])
        entry.write_bytes(bytes(blob))
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main([*RUN, "--out", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err
    assert "note: dropped a damaged entry of the compile cache" in err and len(err.strip().splitlines()) <= 1
    assert not [w for w in caught if "persistent compilation cache" in str(w.message)]
    assert main([*RUN, "--out", str(tmp_path / "c")]) == 0
    assert "damaged" not in capsys.readouterr().err


# --- 6. no traceback on a full disk -------------------------------------------------------------------


def test_6_a_full_disk_while_writing_figures_is_one_line(tmp_path, capsys, monkeypatch):
    from matplotlib.figure import Figure

    out = tmp_path / "cmp"
    argv = ["compare", "--rules", "bp", "--datasets", "tiny", "--epochs", "1", "--out", str(out), *TINY]
    assert main(argv) == 0

    def full(self, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(Figure, "savefig", full)
    run = out / "tiny" / "bp" / "seed0"
    for command in (["plot", str(run), "--out", str(tmp_path / "c.png")],
                    ["norms", *PLUGIN, str(run), "--out", str(tmp_path / "n.png")], argv):
        capsys.readouterr()
        assert main(command) == 2
        output = capsys.readouterr()
        text = output.out + output.err
        errors = [line for line in text.splitlines() if line.startswith("error:")]
        assert "Traceback" not in text and len(errors) == 1, text  # what it reported before, then one line
        assert "cannot write" in errors[0] and errors[0].endswith(": No space left on device")
    assert (run / "summary.json").is_file()  # the runs are kept
