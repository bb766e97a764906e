"""What the built-in loggers (TensorBoard, W&B, MLflow) share: a run's identity, what they log, open runs,
and the three lifecycle hooks, methods of ``RunLogger`` (each logger module offers its instance as ``PLUGIN``,
the object ngf registers).

A run's name says what it is: ``<rule>-<dataset>-seed<N>`` for a single run; in
``ngf compare`` and ``ngf sweep`` its folder below the experiment's,
``<dataset>/<variant>/seed<N>`` (the variant names the rule and the grid point), and
its group is the experiment folder's name. Each logger keeps the handles of the runs
it has open by run (the ``RunConfig`` object the hooks receive), so runs in one
process never mix; a run that never reaches ``ngf_run_end`` (interrupted, or failed)
is closed when the process exits, with the status its ``summary.json`` gives.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import math
import tomllib
from collections.abc import Mapping
from pathlib import Path

from ngf.host.hookspecs import hookimpl
from ngf.runs.config import RunConfig
from ngf.runs.files import CONFIG_FILE, SUMMARY_FILE
from ngf.runs.loggers import import_library, log_args

EPOCH_METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "seconds")
FINAL_KEYS = ("status", "epochs", "epochs_completed", "train_loss", "train_accuracy", "test_loss",
              "test_accuracy", "wall_seconds", "diverged_epoch", "diverged_because")


@dataclasses.dataclass(frozen=True)
class RunIdentity:
    """Who a run is, for a logger: its name, its group (the experiment) and where its files go."""

    name: str
    group: str | None  # the experiment folder's name, for runs of ngf compare / ngf sweep
    experiment: Path | None  # that folder
    out: Path | None  # the run folder
    relative: Path | None  # the run folder below the experiment folder
    names: dict  # rule, model and dataset names
    seed: int

    @classmethod
    def of(cls, config, info: dict) -> RunIdentity:
        """The identity of the run ``config`` describes; ``info`` is ``ngf_run_start``'s."""
        names = {k: str(info.get(k, getattr(config, k))) for k in ("rule", "model", "dataset")}
        out = Path(config.out) if config.out is not None else None
        experiment = Path(config.experiment) if config.experiment is not None else None
        relative = None
        if experiment is not None and out is not None:
            try:
                relative = out.resolve().relative_to(experiment.resolve())
            except ValueError:  # a run folder outside the experiment's: named on its own
                relative = None
        name = relative.as_posix() if relative is not None else \
            f"{names['rule']}-{names['dataset'].replace('/', '-')}-seed{config.seed}"
        return cls(name, experiment.name if experiment is not None else None, experiment, out, relative, names,
                   config.seed)

    def folder(self, sub: str, given: str | None = None) -> Path | None:
        """Where a logger writes: ``given`` or the experiment's (else the run's) ``sub`` folder, then,
        for a run of an experiment, its own subfolder ``<dataset>/<variant>/seed<N>``."""
        base = Path(given) if given else (self.experiment or self.out)
        if base is None:
            return None
        base = base if given else base / sub
        return base / self.relative if self.relative is not None else base

    @property
    def tags(self) -> dict:
        """``rule``, ``model``, ``dataset``, ``seed`` and, in an experiment, ``variant``."""
        tags = {**self.names, "seed": str(self.seed)}
        if self.relative is not None and len(self.relative.parts) == 3:
            tags["variant"] = self.relative.parts[1]
        return tags


def run_config(config, names: dict) -> dict:
    """The run's configuration as logged: ``config.toml`` (defaults filled in) if written yet, else
    every ``RunConfig`` field with the rule, model and dataset names.

    ``config`` may be the read-only view the hooks get (its dicts are mappings).
    """
    path = Path(config.out) / CONFIG_FILE if config.out is not None else None
    if path is not None and path.is_file():
        try:
            return {**tomllib.loads(path.read_text()), **names}
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
            pass
    record = {}
    for field in dataclasses.fields(RunConfig):
        value = getattr(config, field.name, None)
        record[field.name] = dict(value) if isinstance(value, Mapping) else value
    return json.loads(json.dumps({**record, **names}, default=str))


def flat(record: dict, prefix: str = "") -> dict:
    """Nested dicts as ``a.b`` keys; lists as comma-separated text (what parameter stores hold)."""
    out = {}
    for key, value in record.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value
    return out


def epoch_scalars(record: dict) -> dict[str, float]:
    """An epoch's numbers: the metrics, the rule's own (``rule/NAME``), and each node's angle to the bp
    gradient when tracked."""
    scalars = {k: record[k] for k in EPOCH_METRICS if isinstance(record.get(k), (int, float))}
    scalars.update({f"rule/{name}": value for name, value in (record.get("rule_metrics") or {}).items()
                    if isinstance(value, (int, float))})
    for node, angle in enumerate(record.get("alignment_degrees") or (), start=1):
        if angle is not None:  # a node without weights has no angle
            scalars[f"alignment_degrees/node_{node}"] = angle
    return {k: float(v) for k, v in scalars.items() if math.isfinite(v)}


def final(summary: dict) -> dict:
    """The summary's status and final numbers (not its history or config)."""
    return {k: summary[k] for k in FINAL_KEYS if summary.get(k) is not None}


def summary_text(summary: dict) -> str:
    """The summary without its history, as indented JSON."""
    return json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=1, default=str)


class RunLogger:
    """One logger as a plugin: the three lifecycle hooks, over the ``start``, ``epoch``, ``end`` and ``close``
    that each logger defines."""

    name = ""  # the --log NAME

    def __init__(self):
        self.open: dict[int, tuple] = {}  # id(config) → (config, identity, [handle per --log entry])
        self.exit_hook = False

    def start(self, library, arg: str | None, run: RunIdentity, config: dict, info: dict):
        """Open the run in the tool; return the handle the other methods get."""
        raise NotImplementedError

    def epoch(self, handle, epoch: int, scalars: dict) -> None:
        """Log one epoch's numbers."""
        raise NotImplementedError

    def end(self, handle, summary: dict, config_file: Path | None) -> None:
        """Log the summary and status, and close the run in the tool."""
        raise NotImplementedError

    def close(self, handle, status: str) -> None:
        """Close a run that ended without ``ngf_run_end`` (``status``: interrupted or failed)."""
        raise NotImplementedError

    @hookimpl
    def ngf_run_start(self, config, info: dict) -> None:
        """Open one run per ``--log NAME[:ARG]`` of this logger."""
        args = log_args(config, self.name)
        if not args:
            return
        stale = self.open.pop(id(config), None)  # a dead config's id, reused
        if stale is not None:
            self._close(stale)
        library = import_library(self.name)
        run = RunIdentity.of(config, info)
        record = run_config(config, {k: info[k] for k in ("rule", "model", "dataset") if k in info})
        self.open[id(config)] = (config, run, [self.start(library, arg, run, record, info) for arg in args])
        if not self.exit_hook:  # after the library's own exit hooks, so it runs before them
            atexit.register(self.close_all)
            self.exit_hook = True

    @hookimpl
    def ngf_epoch_end(self, config, epoch: int, record: dict) -> None:
        """Log the epoch in every open run of ``config``."""
        if id(config) in self.open:
            scalars = epoch_scalars(record)
            for handle in self.open[id(config)][2]:
                self.epoch(handle, epoch, scalars)

    @hookimpl
    def ngf_run_end(self, config, summary: dict) -> None:
        """Log the summary and close the runs of ``config``."""
        opened = self.open.pop(id(config), None)
        if opened is None:
            return
        path = Path(config.out) / CONFIG_FILE if config.out is not None else None
        for handle in opened[2]:
            self.end(handle, summary, path if path is not None and path.is_file() else None)

    def _close(self, opened: tuple) -> None:
        _, run, handles = opened
        status = "failed"
        if run.out is not None and (run.out / SUMMARY_FILE).is_file():
            try:
                status = json.loads((run.out / SUMMARY_FILE).read_text()).get("status", status)
            except (OSError, ValueError):
                pass
        for handle in handles:
            try:
                self.close(handle, status)
            except Exception:  # noqa: BLE001 - the process is ending; one tool's failure must not stop the rest
                pass

    def close_all(self) -> None:
        """Close every run still open (at exit: runs that were interrupted or failed)."""
        while self.open:
            self._close(self.open.popitem()[1])
