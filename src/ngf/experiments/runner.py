"""Run an experiment's plan in this process, one ``ngf.run`` per folder.

Running the same experiment again picks up where it stopped: a folder whose run
finished (``summary.json``) with the same configuration is read back, one with a
checkpoint is resumed, and a folder holding a different configuration is an
error unless ``overwrite`` is set (which reruns everything).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from ngf.core.errors import Diverged, NgfError
from ngf.experiments.plan import Planned
from ngf.experiments.precheck import check_plan
from ngf.experiments.results import METRICS
from ngf.experiments.runs import read_summary
from ngf.experiments.stacked import Stacks, check_size  # --stack
from ngf.experiments.workers import run_in_workers, share_device, worker_count
from ngf.runs import checkpoint, threads
from ngf.runs.api import run
from ngf.runs.callbacks import Callbacks
from ngf.runs.configfile import CONFIG_FILE, read
from ngf.runs.fields import FIELDS_WITH
from ngf.runs.files import holds_files
from ngf.runs.spec import RunSpec

TABLE_KEYS = ("rule", "model", "epochs", "epoch_seconds", "wall_seconds", *METRICS)  # what results.md reads


#: what an experiment's run may differ in from a folder's and still be that run: where its files go, and its
#: process's settings (the same runs under another --workers are the same runs)
NOT_COMPARED = (*FIELDS_WITH["not_written"], *FIELDS_WITH["process_setting"])


def same_config(folder: Path, config, registry) -> bool:
    """Whether ``folder/config.toml`` describes the run ``config`` would make (``RunSpec.differences``)."""
    stored = read(folder / CONFIG_FILE)
    return next(RunSpec.of(config, registry).differences(stored, NOT_COMPARED), None) is None


def finished_summary(path: Path) -> dict | None:
    """The summary of a run that completed or diverged; None for one interrupted, missing or damaged
    (cut off, not JSON, without its history or metrics), which is then resumed or run again."""
    if not path.is_file():
        return None
    try:
        summary = read_summary(path)
    except NgfError:
        return None
    if summary.get("status", "completed") == "interrupted" or any(key not in summary for key in TABLE_KEYS):
        return None
    return summary


def prepare(item: Planned, registry, overwrite: bool):
    """``(config to run, finished summary or None)`` for one planned run."""
    folder, config = item.folder, item.config
    if overwrite or not holds_files(folder):  # a lock or temporary file a kill left is not a run
        return dataclasses.replace(config, overwrite=True), None
    if not (folder / CONFIG_FILE).is_file() or not same_config(folder, config, registry):
        raise NgfError(f"{folder} holds a run with another configuration; pass --overwrite or choose another --out")
    summary = finished_summary(folder / "summary.json")
    if summary is not None:  # completed or diverged: done
        return config, summary
    if (folder / checkpoint.CHECKPOINT).is_file():
        return dataclasses.replace(config, resume=True), None
    return dataclasses.replace(config, overwrite=True), None


def execute(runs: list[Planned], registry, make_callbacks: Callable[[Planned], Callbacks] | None = None,
            overwrite: bool = False, report: Callable[[str], None] = print,
            executor: tuple[str, str | None] = ("local", None), stack: int | None = None,
            workers: int | str = 1, claim: Callable[[], None] | None = None) -> list[dict]:
    """Run (or read back, or resume) every planned run; return their summaries in order.

    ``claim`` is called once every option, rule, model and folder has been checked, before any
    folder is touched (the experiment command takes its folder's lock there).

    ``executor`` is ``("local", None)`` (one run after another in this process) or
    ``("ray", ADDRESS or None)`` (every run still to train as a Ray task,
    ``ngf.experiments.ray_executor``). ``stack`` (``--stack N``; None: the device's default)
    is how many runs differing only in seed train together locally (``ngf.experiments.stacked``).
    ``workers`` (``--workers N|auto``) > 1 trains N runs at once, each in a worker process on
    its share of the cores (``ngf.experiments.workers``); 1 trains them here.
    """
    if stack is not None:  # --stack N, checked before any work whatever the executor
        _check_stack(stack, executor[0])
    if workers != 1:  # checked before any work; on a GPU, this process and the workers share it
        _check_workers(workers, executor[0])
    elif executor[0] == "local" and runs:  # --threads K here: before check_plan starts JAX
        threads.apply(runs[0].config.threads)
    check_plan(runs, registry)  # every run's options, rule and model, then every folder, before hours of work
    if executor[0] == "ray":  # Ray installed and its address reachable, before any run is reported started
        from ngf.experiments.ray_executor import check_reachable

        check_reachable(executor[1])
    if claim is not None:
        claim()
    prepared = [prepare(item, registry, overwrite) for item in runs]
    if workers != 1:
        return run_in_workers(runs, prepared, registry, workers, report, stack)
    # --stack: runs differing only in seed train together (ngf.experiments.stacked); 1 or ray: every run alone
    stacks = Stacks(runs, prepared, registry, make_callbacks, report, stack if executor[0] == "local" else 1)
    summaries = []
    for index, (item, (config, summary)) in enumerate(zip(runs, prepared), 1):
        what = "finished earlier" if summary else ("resuming" if config.resume else "running")
        what = (None if summary else stacks.status(index - 1)) or what  # --stack
        report(f"[{index}/{len(runs)}] {item.label} · {item.dataset} · seed {item.seed}: {what}")
        if summary is None and executor[0] == "local":
            summary = (stacks.run(index - 1)  # --stack: its stack's summary, or None (it runs alone)
                       or _run_here(index, len(runs), item, config, registry, make_callbacks, report))
        summaries.append(summary)
    todo = [(i, f"[{i + 1}/{len(runs)}] {item.label} · {item.dataset} · seed {item.seed}", prepared[i][0])
            for i, item in enumerate(runs) if summaries[i] is None]
    if todo:
        from ngf.experiments.ray_executor import run_on_ray

        for i, summary in run_on_ray(todo, registry, executor[1], report=report).items():
            summaries[i] = summary
    return summaries


def _check_stack(stack, executor: str) -> None:
    """``--stack N``: a positive size; more than 1 only where runs train here (Ray trains each alone)."""
    check_size(stack)
    if executor != "local" and stack > 1:
        raise NgfError(f"--stack {stack} trains runs together in one process; with --executor {executor} every "
                       "run is a task of its own: leave --stack out")


def _check_workers(workers, executor: str) -> None:
    """``--workers N|auto`` other than 1: a count, local execution; the device made ready to share."""
    worker_count(workers, 1)
    if executor != "local":
        raise NgfError(f"--workers {workers} starts processes on this machine; with --executor {executor} "
                       "every run is a task already: leave --workers out")
    share_device()


def _run_here(index: int, count: int, item: Planned, config, registry, make_callbacks, report) -> dict:
    """One run in this process; a diverged run's summary (one diverging variant does not end the experiment)."""
    callbacks = make_callbacks(item) if make_callbacks else None
    try:
        return run(config, registry=registry, callbacks=callbacks)
    except Diverged as exc:
        report(f"[{index}/{count}] {item.label} · {item.dataset} · seed {item.seed}: {exc}")
        return exc.summary
