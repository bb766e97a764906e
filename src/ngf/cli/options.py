"""From command-line arguments to a ``RunConfig``: config files, resumes, explicit options.

Precedence, lowest first: ``RunConfig``'s defaults, then the file (``--config FILE``,
or ``DIR/config.toml`` for ``--resume DIR``), then the options given explicitly on the
command line. Only options actually typed override the file, so an option given
with its default value still wins over the file.

``--out DIR --resume-if-exists`` makes one command that survives preemption: it resumes
the run in DIR when DIR holds one and starts it otherwise. Either way the run layer
refuses options that differ from the stored run's (``ngf.runs.resuming``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from ngf.core.errors import NgfError
from ngf.host.options import parse_assignments
from ngf.runs.config import RunConfig
from ngf.runs.configfile import CONFIG_FILE, layered, read_stored
from ngf.runs.folder import check_own_file
from ngf.runs.files import holds_run

ASSIGNMENTS = {"rule_opt": ("rule_opts", "--rule-opt"), "model_opt": ("model_opts", "--model-opt"),
               "dataset_opt": ("dataset_opts", "--dataset-opt")}


def explicit_record(args: argparse.Namespace, given) -> dict:
    """The ``RunConfig`` fields set by the options in ``given``, as typed (not yet checked)."""
    fields, record = {f.name for f in dataclasses.fields(RunConfig)}, {}
    for dest in given:
        if dest not in fields and dest not in ASSIGNMENTS or dest == "resume":
            continue  # --quiet, --no-compile-cache, --plugin... are not part of a run's config; --resume apart
        if dest in ASSIGNMENTS:
            field, flag = ASSIGNMENTS[dest]
            record[field] = parse_assignments(getattr(args, dest), flag)
        else:
            record[dest] = getattr(args, dest)
    return record


def _given(args: argparse.Namespace) -> set[str]:
    given = getattr(args, "given", None)
    return set(vars(args)) if given is None else given  # not knowing what was typed, all counts


def apply_process_options(args: argparse.Namespace) -> None:
    """Options of the process rather than of a run: ``--no-compile-cache`` sets ``$NGF_COMPILE_CACHE=off``
    (for this process and the workers it starts; ``ngf.runs.compilecache``). ``--ray-address`` without
    ``--executor ray`` would have no effect, and is refused."""
    executor = getattr(args, "executor", "local")
    if getattr(args, "ray_address", None) is not None and executor != "ray":
        raise NgfError(f"--ray-address applies to --executor ray, not {executor}")
    if getattr(args, "no_compile_cache", False):
        os.environ["NGF_COMPILE_CACHE"] = "off"


def typed_record(args: argparse.Namespace) -> dict:
    """The ``RunConfig`` fields the command line sets explicitly (not from a file, not defaults)."""
    return explicit_record(args, _given(args))


def base_record(args: argparse.Namespace) -> dict:
    """``RunConfig`` fields from ``--config FILE`` with the explicit options on top."""
    apply_process_options(args)
    return layered(getattr(args, "config", None), explicit_record(args, _given(args)))


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The ``RunConfig`` of ``ngf run``: defaults ← file ← explicit options."""
    apply_process_options(args)
    given = _given(args)
    config_file, resume = getattr(args, "config", None), getattr(args, "resume", None)
    if config_file and resume:
        raise NgfError("--resume DIR repeats DIR's own config; do not pass --config with it")
    if getattr(args, "resume_if_exists", False):
        return _resume_if_exists(args, resume)
    if not resume:
        return RunConfig(**base_record(args))
    if "out" in given:
        raise NgfError("--resume DIR continues the run in DIR; do not pass --out with it")
    stored = Path(resume) / CONFIG_FILE
    if not os.path.lexists(stored):
        raise NgfError(f"cannot resume: {resume} holds no run ({CONFIG_FILE} does not exist)")
    check_own_file(stored)  # a directory, a link, a device: named, not read
    read_stored(stored)  # empty, or missing what ngf always writes: refused
    resumed = {"out": str(resume), "resume": True}
    return RunConfig(**layered(Path(resume) / CONFIG_FILE, explicit_record(args, given), resumed))


def _resume_if_exists(args: argparse.Namespace, resume) -> RunConfig:
    """``--out DIR --resume-if-exists``: the run of these options, resumed if DIR holds it already."""
    if resume:
        raise NgfError("--resume-if-exists goes with --out DIR (the options to start with), not --resume DIR")
    record = base_record(args)
    if not record.get("out"):
        raise NgfError("--resume-if-exists needs --out DIR")
    if record.get("overwrite"):
        raise NgfError("--resume-if-exists keeps the run in --out; do not pass --overwrite with it")
    return RunConfig(**{**record, "resume": holds_run(Path(record["out"]))})
