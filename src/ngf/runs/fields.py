"""A run's options, each declared once with its default and the roles it plays.

``RunFields`` declares every option of a run; ``ngf.runs.config.RunConfig`` is that
dataclass with its checks. Each field names its roles (``ROLES``) where it is declared,
and every list of options by role is ``FIELDS_WITH[role]``: what ``config.toml`` leaves
out, what a resume may change, what a grid may not set, and so on. This module imports
nothing but the standard library, so the ``ngf`` parser reads the roles before JAX is
imported.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any

#: each role an option may play, and what it means
ROLES = {
    "object": "a registered name, or an object of the caller's (Python API), used as it is",
    "options_table": "a table of NAME = VALUE: the options of the rule, model or dataset it is named after",
    "completed": "an options table that config.toml and a resume's comparison hold complete, "
                 "every default of the registered rule's or model's factory filled in",
    "always_written": "every config.toml ngf writes holds it; a resume refuses a file that lacks it",
    "not_written": "where the run's files go, or the experiment it belongs to: config.toml leaves it out",
    "may_differ_on_resume": "a resume may change it: the run's extent, where its files and logs go, "
                            "its process's CPU threads; it cannot change what the run computes",
    "not_gridded": "an experiment sets it itself: neither a --grid key nor a plan's by_rule table may",
    "set_per_run": "compare and sweep set it per run, so their parsers leave out ngf run's flag for it",
    "not_a_label": "never tells an experiment's runs apart in the labels of its tables and figures",
    "written_when_set": "config.toml holds it only when it is set, so files written before it existed read "
                        "back the same",
    "compiled": "the run's compiled programs depend on it beyond its seed and lr: a worker of "
                "--workers N prefers the runs whose programs it has compiled",
    "process_setting": "a setting of the run's process (its CPU threads): an experiment's folder written "
                       "under another --workers holds the same run",
}


def option(default: Any, *roles: str) -> Any:
    """A ``RunFields`` field: its default (an empty dict is made anew for each run) and its roles."""
    unknown = [role for role in roles if role not in ROLES]
    if unknown:
        raise ValueError(f"unknown role {unknown[0]!r}; roles: {', '.join(ROLES)}")
    metadata = {"roles": frozenset(roles)}
    if default == {}:
        return dataclasses.field(default_factory=dict, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass
class RunFields:
    """Every option of a run, with its default and roles; names refer to registered rules, models and datasets."""

    # a registered name or a LearningRule
    rule: Any = option("lra", "object", "always_written", "not_gridded", "set_per_run", "compiled")
    # a registered name, an NNX module or a model factory
    model: Any = option("mlp", "object", "always_written", "compiled")
    dataset: Any = option("mnist", "object", "always_written", "not_gridded", "set_per_run",
                          "not_a_label", "compiled")  # a registered name or a DataSplits
    data_dir: str | None = option(None, "not_a_label")
    epochs: int = option(5, "always_written", "may_differ_on_resume")
    batch_size: int = option(64, "always_written", "compiled")
    lr: float = option(1e-3, "always_written")
    optimizer: str = option("adam", "always_written", "compiled")
    schedule: str = option("cosine")
    seed: int = option(0, "always_written", "not_gridded", "set_per_run", "not_a_label")
    out: str | None = option(None, "not_written", "may_differ_on_resume", "not_gridded", "set_per_run",
                             "not_a_label")
    overwrite: bool = option(False, "not_written", "may_differ_on_resume", "not_gridded", "not_a_label")
    devices: int | None = option(None)  # None: every device JAX sees
    steps_per_call: int | None = option(None, "not_a_label")  # None: choose the fast path for the model
    # XLA's CPU threads (cores) in the run's process; None: all (ngf.runs.threads); not gridded: one per process
    # (ngf.experiments.workers)
    threads: int | None = option(None, "may_differ_on_resume", "not_gridded", "not_a_label", "process_setting")
    # the csv logger plugin writes one row per epoch here
    log_csv: str | None = option(None, "may_differ_on_resume", "not_a_label")
    init: str = option("default")  # NAME[:SCALE], see ngf.core.init
    resume: bool = option(False, "not_written", "may_differ_on_resume", "not_gridded", "set_per_run",
                          "not_a_label")  # continue from out's checkpoint
    track_alignment: bool = option(False)  # per-layer angle to the bp gradient each epoch, on a fixed batch
    # a loss above this × max(initial loss, ln C) counts as divergence; 0: off
    divergence_ratio: float = option(1000.0)
    rule_opts: dict = option({}, "options_table", "completed", "not_gridded", "compiled")
    model_opts: dict = option({}, "options_table", "completed", "not_gridded", "compiled")
    # the dataset's options (--dataset-opt)
    dataset_opts: dict = option({}, "options_table", "not_gridded", "written_when_set", "compiled")
    # loggers, NAME[:ARG] each: tensorboard, wandb, mlflow (ngf.runs.loggers)
    log: tuple = option((), "may_differ_on_resume", "not_gridded", "not_a_label", "written_when_set")
    # the compare/sweep folder of this run: loggers group its runs by it
    experiment: str | None = option(None, "not_written", "may_differ_on_resume", "not_gridded")
    weight_decay: float = option(0.0)  # λ: L2 before the optimiser (coupled) or AdamW's after it (decoupled)
    weight_decay_mode: str = option("coupled")
    momentum: float | None = option(None)  # sgd, momentum, nesterov, rmsprop; None: the optimiser's own
    milestones: tuple = option(())  # --schedule multistep: lr × gamma after each of these epochs
    gamma: float = option(0.1)
    epochs_scale: float = option(1.0)  # train round(scale × epochs) epochs, milestones scaled alike
    val_split: int = option(0)  # training examples held out for validation (best_epoch in the summary)
    pad_to: int | None = option(None)  # zero-pad the images to S × S, centred
    loss: str = option("ce", "compiled")  # ce, mse or bce (ngf.core.losses)


#: per role, the names of the options that play it, in the order ``RunFields`` declares them
FIELDS_WITH = types.MappingProxyType({role: tuple(f.name for f in dataclasses.fields(RunFields)
                                                  if role in f.metadata["roles"]) for role in ROLES})
#: per options table, the rule, model or dataset whose options it holds: ``rule_opts`` → ``rule``
OWNER = types.MappingProxyType({table: table.removesuffix("_opts") for table in FIELDS_WITH["options_table"]})
