"""What ``summary.json`` holds: a run's status, its last metrics, its times, config and history."""

from __future__ import annotations

import dataclasses
import json
import time

from ngf.runs.config import RunConfig

SUMMARY_METRICS = ("train_accuracy", "test_accuracy", "train_loss", "test_loss", "alignment_degrees")


def config_record(config: RunConfig, names: dict) -> dict:
    """Every field of ``config`` as JSON values, with the names of its rule, model and dataset."""
    record = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    record.update(names)
    return json.loads(json.dumps(record, default=str))


def summarise(config: RunConfig, names: dict, history: list, started: float, status: str,
              last: dict | None = None, **extra) -> dict:
    """The summary of a run that ``status`` (completed, interrupted, diverged) after ``history``.

    ``started`` is the ``time.perf_counter()`` reading at the start of this process's part
    of the run; ``last`` is the record whose metrics the summary reports (by default the
    last of ``history``); ``extra`` adds keys before the times.
    """
    last = last if last is not None else (history[-1] if history else {})
    return {**names, "status": status, "epochs": config.epochs, "epochs_completed": len(history),
            "seed": config.seed, **{k: last[k] for k in SUMMARY_METRICS if k in last}, **extra,
            "epoch_seconds": [r["seconds"] for r in history],
            "wall_seconds": time.perf_counter() - started,
            "config": config_record(config, names), "history": history}
