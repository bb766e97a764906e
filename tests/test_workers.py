"""ngf compare --workers N: runs in worker processes equal the same runs one after another at the same
thread setting, a killed worker loses only its run (resumed next time), and the thread count is recorded."""

import contextlib
import io
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from ngf.cli import build_parser, main
from ngf.core.errors import NgfError
from ngf.experiments.workers import worker_count

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["compare", "--plugin", "ngf_tiny_data", "--rules", "bp,lra", "--seeds", "0,1", "--datasets", "tiny",
        "--epochs", "2", "--batch-size", "32", "--model-opt", "widths=8", "--quiet"]
RUNS = ["tiny/bp/seed0", "tiny/bp/seed1", "tiny/lra/seed0", "tiny/lra/seed1"]


def epochs(folder: Path, runs=RUNS) -> dict:
    """Each run's per-epoch metrics, without their seconds."""
    return {run: [{k: v for k, v in json.loads(line).items() if "seconds" not in k}
                  for line in (folder / run / "metrics.jsonl").read_text().splitlines()] for run in runs}


@pytest.fixture(scope="module", autouse=True)
def shared_compile_cache(tmp_path_factory):
    """One persistent compilation cache for the module's processes: each worker compiles a rule's
    programs once per machine, not once per process (what a program computes does not depend on
    the thread count it was compiled under; the process's thread pool decides)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NGF_COMPILE_CACHE", str(tmp_path_factory.mktemp("jax-cache")))
        yield


@pytest.fixture(scope="module")
def one_thread(tmp_path_factory) -> Path:
    """The comparison one run after another in one process of one thread (``--workers 1 --threads 1``):
    a fresh process, since this one's JAX already computes with every core."""
    out = tmp_path_factory.mktemp("serial") / "cmp"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "ngf.cli", *ARGS, "--threads", "1", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory) -> tuple[Path, str]:
    """The comparison in two worker processes of one thread each, and what it printed."""
    out = tmp_path_factory.mktemp("workers") / "cmp"
    text = io.StringIO()  # capsys is one test's; this fixture serves two
    with contextlib.redirect_stdout(text):
        status = main([*ARGS, "--workers", "2", "--threads", "1", "--out", str(out)])
    assert status == 0, text.getvalue()
    return out, text.getvalue()


def test_two_workers_give_the_bits_of_the_runs_one_after_another_on_one_thread(one_thread, two_workers):
    out, printed = two_workers
    assert epochs(out) == epochs(one_thread)
    for n in range(1, 5):
        assert f"[{n}/4]" in printed and printed.count(f"[{n}/4]") == 2, printed  # running, then finished
    assert printed.count(": finished (test accuracy") == 4
    assert (out / "results.md").is_file()


def test_the_thread_setting_is_recorded_and_another_worker_count_reads_the_runs_back(one_thread, two_workers,
                                                                                    capsys):
    out, _ = two_workers
    for folder in (out, one_thread):
        for run in RUNS:
            assert tomllib.loads((folder / run / "config.toml").read_text())["threads"] == 1
            assert json.loads((folder / run / "summary.json").read_text())["config"]["threads"] == 1
    assert main([*ARGS, "--out", str(out)]) == 0  # --workers 1, threads unset: the same runs, finished
    assert capsys.readouterr().out.count("finished earlier") == 4


def test_a_killed_worker_loses_its_run_only_and_the_run_resumes_next_time(tmp_path, one_thread, capsys):
    """ngf_ray_killer SIGKILLs a run's process after its first epoch unless its ``.killed`` marker exists:
    here only bp · seed 1 is killed, bp · seed 0 finishes. The same command again resumes it."""
    out, runs = tmp_path / "cmp", RUNS[:2]
    (out / runs[0]).parent.mkdir(parents=True)
    Path(f"{out / runs[0]}.killed").touch()
    killed = [*ARGS, "--rules", "bp", "--plugin", "ngf_ray_killer", "--workers", "auto", "--out", str(out)]
    assert main(killed) == 2
    lines = capsys.readouterr().out.strip().splitlines()
    died = [line for line in lines if "its worker" in line]
    assert len(died) == 1 and died[0].startswith("[2/2] bp · tiny · seed 1: its worker ") and \
        died[0].endswith(" died (killed by SIGKILL); the last checkpoint stays: run the same command again to "
                         "resume it"), lines
    assert lines[-1] == ("error: 1 of 2 runs did not finish (their worker died); run the same command again to "
                         "resume them from their checkpoints")
    assert json.loads((out / runs[0] / "summary.json").read_text())["status"] == "completed"
    assert not (out / runs[1] / "summary.json").exists() and (out / runs[1] / "checkpoint.msgpack").is_file()
    assert main(killed) == 0  # again: seed 0 read back, seed 1 resumed after its first epoch
    printed = capsys.readouterr().out
    assert "[1/2] bp · tiny · seed 0: finished earlier" in printed
    assert "[2/2] bp · tiny · seed 1: resuming (worker 1, " in printed
    assert Path(f"{out / runs[1]}.starts").read_text().split() == ["0", "1"]
    cores = len(os.sched_getaffinity(0))  # auto: a worker per core, at most one per run; each its share
    threads = max(1, cores // min(cores, 2))
    assert tomllib.loads((out / runs[0] / "config.toml").read_text())["threads"] == threads
    if threads == 1:  # as the reference (on this 2-core machine): the killed and resumed run ends as it does
        assert epochs(out, runs) == epochs(one_thread, runs)


@pytest.mark.parametrize("value", ["0", "x", "-1"])
def test_a_bad_worker_count_is_one_line(value, tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        main([*ARGS, "--workers", value, "--out", str(tmp_path / "x")])
    assert caught.value.code == 2
    assert capsys.readouterr().err.strip() == (f"error: argument --workers: expects a positive integer or auto, "
                                               f"got '{value}' (see `ngf compare --help`)")
    assert not (tmp_path / "x").exists()


def test_auto_is_one_worker_per_usable_core_and_at_most_one_per_run():
    cores = len(os.sched_getaffinity(0))
    assert build_parser().parse_args([*ARGS, "--workers", "auto", "--out", "x"]).workers == "auto"
    assert worker_count("auto", 1000) == cores and worker_count("auto", 1) == 1 and worker_count(3, 2) == 2
    with pytest.raises(NgfError, match="--workers must be a positive integer or auto, got 0"):
        worker_count(0, 4)


def test_workers_do_not_go_with_ray_nor_threads_past_the_cores(tmp_path, capsys):
    assert main([*ARGS, "--workers", "2", "--executor", "ray", "--out", str(tmp_path / "ray")]) == 2
    assert capsys.readouterr().out.strip() == ("error: --workers 2 starts processes on this machine; with "
                                               "--executor ray every run is a task already: leave --workers out")
    cores = len(os.sched_getaffinity(0))
    assert main([*ARGS, "--workers", "2", "--threads", str(cores + 1), "--out", str(tmp_path / "t")]) == 2
    assert capsys.readouterr().out.strip().startswith(f"error: --threads {cores + 1} is more than the {cores} cores")
    assert not (tmp_path / "ray").exists() and not (tmp_path / "t").exists()


def test_runs_that_differ_only_in_seed_go_to_one_worker_as_one_stack(tmp_path):
    """``--stack 2 --workers N``: each worker's task is a stack of seeds (ngf.experiments.stacked)."""
    from ngf.experiments.plan import plan
    from ngf.experiments.worktasks import tasks as _tasks
    from ngf.host.registry import load_registry
    from ngf.runs.config import RunConfig

    registry = load_registry(["ngf_tiny_data"], [])
    runs = plan(RunConfig(dataset="tiny", model_opts={"widths": (8,)}), ["bp", "lra"], ["tiny"], [0, 1, 2], [],
                tmp_path, registry)
    prepared = [(item.config, None) for item in runs]
    tasks = _tasks(list(range(6)), prepared, 1, 2)
    assert [[key for key, _ in task] for task in tasks] == [[0, 1], [2], [3, 4], [5]]
    assert {config.threads for task in tasks for _, config in task} == {1}
    assert [[key for key, _ in task] for task in _tasks([1, 2, 3], prepared, 1, 1)] == [[1], [2], [3]]


def test_a_worker_takes_the_seeds_of_the_rule_it_compiled_and_another_worker_another_rule(tmp_path):
    """``next_task``: with the plan bp×3, fa×3, lra×3 and two workers, each compiles fewer rules than all."""
    from ngf.experiments.plan import plan
    from ngf.experiments.worktasks import next_task, tasks
    from ngf.host.registry import load_registry
    from ngf.runs.config import RunConfig

    registry = load_registry(["ngf_tiny_data"], [])
    runs = plan(RunConfig(dataset="tiny", model_opts={"widths": (8,)}), ["bp", "fa", "lra"], ["tiny"], [0, 1, 2],
                [], tmp_path, registry)
    todo = tasks(list(range(9)), [(item.config, None) for item in runs], 1, 1)
    held, taken = [None, None], {0: [], 1: []}
    for worker in (0, 1, 0, 1, 0, 1, 0, 1, 0, 1):  # the two workers finish in turn
        task = next_task(held, worker, todo)
        if task is not None:
            taken[worker].append(runs[task[0][0]].label)
    assert taken == {0: ["bp", "bp", "bp", "lra", "lra"], 1: ["fa", "fa", "fa", "lra"]}
    assert not todo and next_task(held, 0, todo) is None
