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
Both sides are compared complete: a hyperparameter left out means its default
(``ngf.runs.spec.RunSpec.differences``).
"""

from __future__ import annotations

from pathlib import Path

from ngf.core.errors import NgfError
from ngf.runs import checkpoint
from ngf.runs.config import RunConfig
from ngf.runs.configfile import read_stored
from ngf.runs.fields import FIELDS_WITH
from ngf.runs.files import CONFIG_FILE
from ngf.runs.spec import RunSpec

LENGTH_DEPENDENT = ("cosine",)  # schedules planned over the run's length: its epochs may not change


def _text(value) -> str:
    return "unset" if value is None else repr(value)


def check_same_run(spec: RunSpec) -> dict | None:
    """Refuse to resume ``spec.config.out`` with options that differ from its ``config.toml``; then check
    that its checkpoint is readable (both before the data and the model are loaded). The stored record,
    or None when the folder holds no ``config.toml``."""
    config = spec.config
    out = Path(config.out)
    stored_file = out / CONFIG_FILE
    stored = None
    if stored_file.is_file():
        stored = read_stored(stored_file)
        for label, before, now in spec.differences(stored, FIELDS_WITH["may_differ_on_resume"]):
            raise NgfError(f"cannot resume {out}: {label} was {_text(before)} in that run, not "
                           f"{_text(now)} (a resume may change only the epochs and where files and logs "
                           "go; start a new run in another folder)")
        check_extent(out, RunConfig(**stored).run_epochs, config)
    checkpoint.check_readable(out)
    return stored


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
