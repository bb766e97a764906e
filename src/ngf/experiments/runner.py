"""Run an experiment's plan in this process, one ``ngf.run`` per folder.

Running the same experiment again picks up where it stopped: a folder whose run
finished (``summary.json``) with the same configuration is read back, one with a
checkpoint is resumed, and a folder holding a different configuration is an
error unless ``overwrite`` is set (which reruns everything).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable

from ngf.core.errors import Diverged, NgfError
from ngf.experiments.plan import Planned
from ngf.runs import checkpoint
from ngf.runs.api import run
from ngf.runs.callbacks import Callbacks
from ngf.runs.configfile import CONFIG_FILE, read, resolved


def _comparable(record: dict) -> dict:
    """A config record without ``None``s (TOML leaves them out) and with tuples for lists."""
    def fix(value):
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items() if v is not None}
        return tuple(value) if isinstance(value, list) else value
    return fix({k: v for k, v in record.items() if v is not None})


def _names(config) -> dict:
    return {"rule": config.rule, "model": config.model, "dataset": config.dataset}


def same_config(folder: Path, config, registry) -> bool:
    """Whether ``folder/config.toml`` describes the run ``config`` would make."""
    planned = resolved(config, registry, _names(config))
    return _comparable(read(folder / CONFIG_FILE)) == _comparable(planned)


def prepare(item: Planned, registry, overwrite: bool):
    """``(config to run, finished summary or None)`` for one planned run."""
    folder, config = item.folder, item.config
    if overwrite or not folder.is_dir() or not any(folder.iterdir()):
        return dataclasses.replace(config, overwrite=True), None
    if not (folder / CONFIG_FILE).is_file() or not same_config(folder, config, registry):
        raise NgfError(f"{folder} holds a run with another configuration; pass --overwrite or choose another --out")
    if (folder / "summary.json").is_file():
        summary = json.loads((folder / "summary.json").read_text())
        if summary.get("status", "completed") != "interrupted":  # completed or diverged: done
            return config, summary
    if (folder / checkpoint.CHECKPOINT).is_file():
        return dataclasses.replace(config, resume=True), None
    return dataclasses.replace(config, overwrite=True), None


def execute(runs: list[Planned], registry, make_callbacks: Callable[[Planned], Callbacks] | None = None,
            overwrite: bool = False, report: Callable[[str], None] = print) -> list[dict]:
    """Run (or read back, or resume) every planned run; return their summaries in order."""
    for item in runs:  # check every folder before spending hours on the first runs
        prepare(item, registry, overwrite)
    summaries = []
    for index, item in enumerate(runs, 1):
        config, summary = prepare(item, registry, overwrite)
        what = "finished earlier" if summary else ("resuming" if config.resume else "running")
        report(f"[{index}/{len(runs)}] {item.label} · {item.dataset} · seed {item.seed}: {what}")
        if summary is None:
            callbacks = make_callbacks(item) if make_callbacks else None
            try:
                summary = run(config, registry=registry, callbacks=callbacks)
            except Diverged as exc:  # one diverging variant does not end the experiment
                report(f"[{index}/{len(runs)}] {item.label} · {item.dataset} · seed {item.seed}: {exc}")
                summary = exc.summary
        summaries.append(summary)
    return summaries
