"""What a resumed run may change: only what cannot change its result.

A resumed run continues from its checkpoint, so it must be the run that ``DIR/config.toml``
records. ``ngf run --resume DIR OPTION...``, ``ngf run OPTIONS --out DIR --resume-if-exists``
and ``ngf.run(resume=True, ...)`` may change ``epochs`` (to extend the run, never below the
epochs it has finished, and only under a schedule that does not depend on the run's length:
constant or multistep, not cosine), where its
files go (``out``, ``overwrite``, ``resume``), its logging (``log_csv``, ``log``,
``experiment``) and its process's CPU threads (``threads``, ``ngf.runs.threads``: the
last bits of what follows may then differ from an uninterrupted run's); any other
difference (rule, a hyperparameter, lr, seed, init, batch size, ...) is refused with
one line naming the option and both values, so that ``config.toml`` always reproduces
the run.
Both sides are compared complete: a hyperparameter left out means its default.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ngf.core.errors import NgfError
from ngf.host.options import complete_options
from ngf.host.registry import Registry
from ngf.runs import checkpoint
from ngf.runs.config import RunConfig
from ngf.runs.configfile import read_stored
from ngf.runs.fields import FIELDS_WITH, OWNER
from ngf.runs.files import CONFIG_FILE

LENGTH_DEPENDENT = ("cosine",)  # schedules planned over the run's length: its epochs may not change
#: options the built-in models gained after checkpoints began to record the run's identity (ngf.runs.identity):
#: at these values they are left out of the comparison, so a run written before them still resumes
ADDED_DEFAULTS = {("mlp", "bias"): True, ("mlp", "dropout"): 0.0, ("cnn", "bias"): True, ("cnn", "dropout"): 0.0,
                  ("resnet", "bias"): True}


def _plain(value):
    """A value as TOML gives it back: lists as tuples, paths as text."""
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def comparable(config: RunConfig, registry: Registry) -> dict:
    """``{label: value}`` of every option a resume must keep, hyperparameters complete.

    A rule, model or dataset given as an object (Python API) cannot be compared with
    what the file names it; it is left out, with its (necessarily empty) options table.
    """
    found = {}
    for field in dataclasses.fields(RunConfig):
        name, value = field.name, getattr(config, field.name)
        if name in FIELDS_WITH["may_differ_on_resume"] or name in FIELDS_WITH["object"] and not isinstance(value, str):
            continue
        if name in FIELDS_WITH["completed"]:
            kind = OWNER[name]
            named = getattr(config, kind)
            opts = {key: _plain(option) for key, option in complete_options(kind, named, value, registry).items()}
            found.update({f"{kind} option {key}": option for key, option in opts.items()
                          if not _added_default(named, key, option)})
        else:
            found[name] = _plain(value)
    return found


def _added_default(named, key: str, value) -> bool:
    """Whether ``value`` is an option's default that ``ADDED_DEFAULTS`` leaves out of the comparison."""
    default = ADDED_DEFAULTS.get((named, key), ...)
    return value == default and isinstance(value, bool) == isinstance(default, bool)


def _text(value) -> str:
    return "unset" if value is None else repr(value)


def check_same_run(config: RunConfig, registry: Registry) -> None:
    """Refuse to resume ``config.out`` with options that differ from its ``config.toml``; then check
    that its checkpoint is readable (both before the data and the model are loaded)."""
    out = Path(config.out)
    stored_file = out / CONFIG_FILE
    if stored_file.is_file():
        stored_config = RunConfig(**read_stored(stored_file))
        stored = comparable(stored_config, registry)
        given = comparable(config, registry)
        for kind in FIELDS_WITH["object"]:  # an object now: what the file names it by cannot be checked
            if not isinstance(getattr(config, kind), str):
                stored = {k: v for k, v in stored.items() if k != kind and not k.startswith(f"{kind} option ")}
        for label in dict.fromkeys([*stored, *given]):
            before, now = stored.get(label), given.get(label)
            if before != now:
                raise NgfError(f"cannot resume {out}: {label} was {_text(before)} in that run, not "
                               f"{_text(now)} (a resume may change only the epochs and where files and logs "
                               "go; start a new run in another folder)")
        check_extent(out, stored_config.run_epochs, config)
    checkpoint.check_readable(out)


def check_extent(out: Path, planned: int, config: RunConfig) -> None:
    """Refuse a resume to fewer epochs than the run has finished, and any change of the length of a run
    whose schedule depends on it (cosine: its first epochs followed the plan for ``planned`` epochs)."""
    done = len(checkpoint.stored_history(out))
    if config.run_epochs < done:
        raise NgfError(f"cannot resume {out} for {config.run_epochs} epochs: it has finished {done} already "
                       f"(give --epochs {done} or more)")
    if config.schedule in LENGTH_DEPENDENT and config.run_epochs != planned:
        raise NgfError(f"cannot resume {out} for {config.run_epochs} epochs: its {config.schedule} schedule was "
                       f"planned for {planned}, so its config.toml could not reproduce the longer run; start a "
                       "new run of that length (a constant or multistep schedule may be extended)")
