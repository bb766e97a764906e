"""What ``summary.json`` holds: a run's status, its last metrics, its times, config and history."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping

from ngf.runs.config import RunConfig
from ngf.runs.protocol import best_epoch

SUMMARY_METRICS = ("train_accuracy", "test_accuracy", "train_loss", "test_loss", "val_accuracy", "val_loss",
                   "alignment_degrees")


def config_record(config: RunConfig, names: dict) -> dict:
    """Every field of ``config`` as JSON values, with the names of its rule, model and dataset."""
    record = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    record.update(names)  # a hook's read-only view gives its dicts as mappings: JSON objects too
    return json.loads(json.dumps(record, default=lambda v: dict(v) if isinstance(v, Mapping) else str(v)))


@dataclasses.dataclass
class Clock:
    """A run's wall time: this process's part, from ``started``, after ``earlier`` seconds of earlier ones.

    ``earlier`` is what the checkpoint a resumed run starts from recorded: the wall time
    of every earlier process up to its last checkpoint.
    """

    started: float = dataclasses.field(default_factory=time.perf_counter)
    earlier: float = 0.0
    compile: float | None = None  # seconds this process compiled the epoch's programs, once measured

    def last(self) -> float:
        """Seconds of this process's part."""
        return time.perf_counter() - self.started

    def total(self) -> float:
        """Seconds of the whole run, every process of it."""
        return self.earlier + self.last()


def summarise(config: RunConfig, names: dict, history: list, clock: Clock, status: str,
              last: dict | None = None, atomic_nodes: list = (), **extra) -> dict:
    """The summary of a run that ``status`` (completed, interrupted, diverged) after ``history``.

    ``clock`` times the run: ``wall_seconds`` is its total over every process of a resumed
    run, ``wall_seconds_last`` this process's part, ``compile_seconds`` what this process
    spent compiling the epoch's programs before its first epoch (each of ``epoch_seconds``
    is an epoch's training without it). ``last`` is the record whose metrics
    the summary reports (by default the last of ``history``); ``atomic_nodes`` names the
    nodes trained by backprop inside (``Resolved.atomic_nodes``); ``extra`` adds keys
    before the times.
    """
    last = last if last is not None else (history[-1] if history else {})
    this_part = clock.last()
    scale = {} if config.epochs_scale == 1 else {"epochs_scale": config.epochs_scale,
                                                  "epochs_unscaled": config.epochs}
    return {**names, "status": status, "epochs": config.run_epochs, **scale, "epochs_completed": len(history),
            "seed": config.seed, "atomic_nodes": list(atomic_nodes),
            **{k: last[k] for k in SUMMARY_METRICS if k in last}, **best_epoch(history), **extra,
            **({} if clock.compile is None else {"compile_seconds": clock.compile}),
            "epoch_seconds": [r["seconds"] for r in history],
            "wall_seconds": clock.earlier + this_part, "wall_seconds_last": this_part,
            "config": config_record(config, names), "history": history}
