"""``ngf compare`` / ``ngf sweep --workers N``: N runs at once, each worker a process on its share of the cores.

The runs still to train (decided beforehand from the folders, ``runner.prepare``) go one
task at a time (a run, or a ``--stack`` of runs differing only in seed) to N long-lived
worker processes, started with ``multiprocessing``'s spawn context (JAX must not be
forked). A worker builds the plugin registry once and trains task after task in the
runs' folders, so its imports and compiled programs serve every run it trains; the parent
trains nothing. Each worker's XLA computes with K threads (``ngf.runs.threads``), K =
``--threads`` or cores // N, recorded as each run's ``threads``: a run gives the bits it
gives alone in a process of K threads. On a GPU the workers share
the device, each taking memory as it needs it. A run's ``NgfError`` ends the experiment
with its line; a diverged run is a summary; a worker that dies is one line, its runs
resumable, the others train on; Ctrl-C stops every worker with SIGTERM, each run writing
its interrupted summary. docs/scaling.md ("Many runs on one machine") says why and how.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import sys
import threading
from collections import deque
from multiprocessing.connection import wait

from ngf.core.errors import NgfError, Terminated
from ngf.experiments.ray_executor import _plugins
from ngf.experiments.worktasks import next_task, tasks
from ngf.runs.threads import apply, backend_started, check, usable_cores

STOP_SECONDS = 120  # a stopped worker's time to write its interrupted summary before it is killed
DEVICE_ENV = ("XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_PYTHON_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_ALLOCATOR")


def worker_count(workers, runs: int) -> int:
    """``--workers`` as a number of processes: ``auto`` is one per usable core; at most one per run."""
    if workers == "auto":
        workers = len(usable_cores())
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise NgfError(f"--workers must be a positive integer or auto, got {workers!r}")
    return max(1, min(workers, runs))


def share_device() -> None:
    """On a GPU, let several processes share it: memory taken as needed, not 75% at start."""
    if not backend_started() and not any(name in os.environ for name in DEVICE_ENV):
        os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"


class _Stop:
    """SIGTERM in a worker: ``Terminated``, once, so that a second signal cannot cut the run's
    interrupted summary short; sent again a moment later if Python dropped it in a callback
    (as ``ngf.cli.signals`` does for the command)."""

    def __init__(self):
        self.raised = False

    def __call__(self, signum, frame):
        if not self.raised:
            self.raised = True
            raise Terminated()

    def unraisable(self, info) -> None:
        """``sys.unraisablehook``: an interruption Python dropped is sent again; anything else printed."""
        if not isinstance(info.exc_value, KeyboardInterrupt):
            return sys.__unraisablehook__(info)
        self.raised = False
        timer = threading.Timer(0.01, os.kill, (os.getpid(), signal.SIGTERM))
        timer.daemon = True
        timer.start()


def serve(threads: int, plugins: list[str], blocked: list[str], conn) -> None:
    """A worker process: XLA's pool of ``threads`` threads, then one task after another from ``conn``
    until ``None`` comes.

    Ctrl-C reaches the parent, which stops the workers with SIGTERM (raised here as
    ``Terminated``, so the run in progress writes its interrupted summary).
    """
    stop = _Stop()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, stop)
    sys.unraisablehook = stop.unraisable
    try:
        share_device()
        apply(threads)  # JAX starts here, its CPU pool with ``threads`` threads
        from ngf.host.registry import load_registry

        registry = load_registry(plugins, blocked)
        while (task := conn.recv()) is not None:
            conn.send(_train(task, registry, conn))
    except (KeyboardInterrupt, EOFError, BrokenPipeError):
        pass  # stopped by the parent, or the parent is gone


def _train(task: list, registry, conn) -> tuple:
    """``(outcome, keys, payload, message)`` of one task: ``done`` with ``[(summary, problem or None)]``,
    or ``error`` with the ``NgfError``'s exit status and line."""
    keys, configs = [key for key, _ in task], [config for _, config in task]
    try:
        return "done", keys, _results(configs, registry), None
    except NgfError as exc:
        return "error", keys, exc.exit_code, str(exc)
    except KeyboardInterrupt:
        conn.send(("interrupted", keys, None, None))
        raise


def _results(configs: list, registry) -> list[tuple[dict, str | None]]:
    """Each run's summary and, for one that diverged, why: a run alone, or a stack (``--stack``)."""
    if len(configs) > 1:
        from ngf.runs.stacked import run_stack

        return [(member.summary, member.problem) for member in run_stack(configs, registry, [None] * len(configs))]
    from ngf.core.errors import Diverged
    from ngf.runs.api import run

    try:
        return [(run(configs[0], registry=registry), None)]
    except Diverged as exc:  # a diverged run is a summary: one diverging variant does not end the experiment
        return [(exc.summary, str(exc))]


@dataclasses.dataclass
class _Slot:
    """A worker process, its end of the pipe, and the keys of the runs it trains."""

    process: multiprocessing.Process
    conn: object
    task: list | None = None


class Workers:
    """N worker processes and the runs they train (``run_in_workers``)."""

    def __init__(self, count: int, threads: int, registry, labels: dict, report):
        self.context = multiprocessing.get_context("spawn")
        self.threads, self.plugins, self.labels, self.report = threads, _plugins(registry), labels, report
        self.slots: list[_Slot | None] = [None] * count
        self.programs: list[str | None] = [None] * count  # what each worker compiled last (``programs``)
        self.lost: list[int] = []

    def _start(self, index: int) -> _Slot:
        here, there = self.context.Pipe()
        process = self.context.Process(target=serve, name=f"ngf-worker-{index + 1}",
                                       args=(self.threads, *self.plugins, there))
        process.start()
        there.close()
        self.slots[index] = _Slot(process, here)
        return self.slots[index]

    def _give(self, index: int, todo: deque) -> None:
        """Worker ``index`` takes the next task (a run, or a stack of runs), or stops when none is left."""
        slot = self.slots[index] or self._start(index)
        task = next_task(self.programs, index, todo)
        try:
            slot.conn.send(task)
        except OSError:  # it ended after its last task: a fresh worker takes this one
            slot.process.join()
            self.slots[index] = None
            if task is not None:
                todo.appendleft(task)
                self._give(index, todo)
            return
        if task is None:
            slot.task = None
            return
        slot.task = [key for key, _ in task]
        (first, config), where = task[0], f"(worker {index + 1}, {self.threads} thread{'s' * (self.threads > 1)})"
        what = "resuming" if config.resume else "running"
        if len(task) > 1:
            what += f" with seeds {', '.join(str(c.seed) for _, c in task)} as one stack"
        self.report(f"{self.labels[first]}: {what} {where}")
        for key, _ in task[1:]:
            self.report(f"{self.labels[key]}: trained in the stack of {self.labels[first].split(']')[0]}]")

    def train(self, todo: deque, summaries: list) -> None:
        """Train ``todo`` (tasks of ``(key, config)``), filling ``summaries[key]``; a run's ``NgfError`` raises."""
        for index in range(len(self.slots)):
            self._give(index, todo)
        while busy := [(i, s) for i, s in enumerate(self.slots) if s is not None and s.task is not None]:
            ready = wait([s.conn for _, s in busy] + [s.process.sentinel for _, s in busy])
            for index, slot in busy:
                if slot.conn in ready or slot.process.sentinel in ready:
                    self._settle(index, slot, todo, summaries)

    def _settle(self, index: int, slot: _Slot, todo: deque, summaries: list) -> None:
        """What worker ``index`` sent, or its death; then its next task."""
        message = None
        try:
            if slot.conn.poll():
                message = slot.conn.recv()
        except Exception:  # noqa: BLE001 - EOFError, or a message cut off as the worker died
            pass
        if message is None and slot.process.is_alive():
            return
        outcome, keys, payload, text = message or ("died", slot.task, None, None)
        if outcome == "error":
            error = NgfError(f"{self.labels[keys[0]]}: {text}")
            error.exit_code = payload
            raise error
        if outcome in ("died", "interrupted"):  # killed, crashed, or stopped by a SIGTERM not from here
            slot.process.join(STOP_SECONDS)
            self._died(index, slot, "stopped by SIGTERM, its summary says interrupted" if message else None)
            if todo:
                self._give(index, todo)  # a fresh worker in its place
            return
        for key, (summary, problem) in zip(keys, payload):
            summaries[key] = summary
            self.report(f"{self.labels[key]}: {problem or 'finished' + _result(summary)}")
        self._give(index, todo)

    def _died(self, index: int, slot: _Slot, how: str | None = None) -> None:
        """One line for a worker that ended with its runs unfinished; they count as lost."""
        code = slot.process.exitcode
        if how is None and code is not None and code < 0:
            how = f"killed by {signal.Signals(-code).name}" if -code in set(signal.Signals) else f"signal {-code}"
        how = how or f"exit status {code}"
        others = len(slot.task) - 1
        more = f" and the {others} other run{'s' * (others > 1)} of its stack" if others else ""
        self.report(f"{self.labels[slot.task[0]]}{more}: its worker {index + 1} died ({how}); the last checkpoint "
                    f"stays: run the same command again to resume {'them' if others else 'it'}")
        self.lost.extend(slot.task)
        self.slots[index] = None

    def close(self) -> None:
        """Stop every worker: SIGTERM to those training (they write their interrupted summaries)."""
        alive = [s for s in self.slots if s is not None and s.process.is_alive()]
        for slot in alive:
            if slot.task is not None:
                os.kill(slot.process.pid, signal.SIGTERM)
        try:
            for slot in alive:
                slot.process.join(STOP_SECONDS)
        finally:  # a second Ctrl-C, or a worker that does not stop: no worker outlives the command
            for slot in alive:
                if slot.process.is_alive():
                    slot.process.kill()
                    slot.process.join()


def _result(summary: dict) -> str:
    """`` (test accuracy 0.9123, 12.3 s)`` for a finished run's line."""
    accuracy, seconds = summary.get("test_accuracy"), summary.get("wall_seconds_last")
    parts = [f"test accuracy {accuracy:.4f}" if isinstance(accuracy, float) else "",
             f"{seconds:.1f} s" if isinstance(seconds, (int, float)) else ""]
    return f" ({', '.join(p for p in parts if p)})" if any(parts) else ""


def run_in_workers(runs: list, prepared: list, registry, workers, report, stack=None) -> list[dict]:
    """Every run of the plan: finished ones read back, the others trained by ``workers`` processes.

    ``prepared`` is ``runner.prepare``'s ``(config, summary or None)`` per run; ``stack`` is
    ``--stack`` (runs that differ only in seed train together in one worker). The summaries
    come back in plan order.
    """
    labels = {i: f"[{i + 1}/{len(runs)}] {item.label} · {item.dataset} · seed {item.seed}"
              for i, item in enumerate(runs)}
    summaries = [summary for _, summary in prepared]
    for key, summary in enumerate(summaries):
        if summary is not None:
            report(f"{labels[key]}: finished earlier")
    keys = [key for key, summary in enumerate(summaries) if summary is None]
    if not keys:
        return summaries
    count = worker_count(workers, len(keys))
    # each worker's share of the cores as the whole plan gives it, not the runs left: a run resumed by the
    # same command keeps the threads of its first part (its bits, and config.toml's record)
    threads = prepared[keys[0]][0].threads or max(1, len(usable_cores()) // worker_count(workers, len(runs)))
    check(threads)  # not more than the cores there are
    todo = tasks(keys, prepared, threads, stack)
    pool = Workers(min(count, len(todo)), threads, registry, labels, report)
    try:
        pool.train(todo, summaries)
    finally:
        pool.close()
    if pool.lost:
        raise NgfError(f"{len(pool.lost)} of {len(runs)} runs did not finish (their worker died); run the same "
                       "command again to resume them from their checkpoints")
    return summaries
