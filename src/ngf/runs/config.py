"""A run's configuration: its options (declared in ``ngf.runs.fields``), their checks, and its optimiser."""

from __future__ import annotations

import dataclasses
import math
import os

import optax
from flax import nnx

from ngf.core.errors import NgfError, unknown_name
from ngf.core.init import parse_init
from ngf.core.rule import LearningRule
from ngf.data.splits import DataSplits
from ngf.runs.fields import RunFields
from ngf.runs.loggers import check_log
from ngf.runs.optimizers import OPTIMIZERS  # noqa: F401 (ngf.OPTIMIZERS, where callers find it)
from ngf.runs.protocol import build_optimizer, check_protocol

SCHEDULES = ("constant", "cosine", "multistep")


def make_optimizer(config: "RunConfig", steps_per_epoch: int) -> optax.GradientTransformation:
    """The optax optimiser for a run, with its learning-rate schedule, momentum and weight decay."""
    return build_optimizer(config, steps_per_epoch, config.run_epochs, config.run_milestones)


def make_optimizers(config: "RunConfig", steps_per_epoch: int, rule) -> tuple:
    """The run's optimiser and ``make_rule_optimizer``'s, for the engine."""
    return make_optimizer(config, steps_per_epoch), make_rule_optimizer(config, steps_per_epoch, rule)


def make_rule_optimizer(config: "RunConfig", steps_per_epoch: int, rule) -> optax.GradientTransformation | None:
    """The run's optimiser for the rule's trainable parameters: its lr × ``rule.params_lr``, and its weight
    decay only if ``rule.params_decay``; None when that is the run's optimiser itself (or the rule has none)."""
    if getattr(rule, "init_params", None) is None or (rule.params_lr == 1.0 and rule.params_decay):
        return None
    own = dataclasses.replace(config, lr=config.lr * rule.params_lr,
                              weight_decay=config.weight_decay if rule.params_decay else 0.0)
    return make_optimizer(own, steps_per_epoch)


@dataclasses.dataclass
class RunConfig(RunFields):
    """Every option of a run (declared with its roles in ``ngf.runs.fields``) and their checks; names refer to
    registered rules, models and datasets."""

    @property
    def run_epochs(self) -> int:
        """The epochs the run trains: round(epochs_scale × epochs), at least 1 (``epochs`` when unscaled)."""
        return self.epochs if self.epochs_scale == 1 else max(1, round(self.epochs_scale * self.epochs))

    @property
    def run_milestones(self) -> tuple:
        """The milestones the schedule uses, scaled like the epochs: rounded, at least 1, duplicates merged."""
        if self.epochs_scale == 1:
            return tuple(self.milestones)
        return tuple(sorted({max(1, round(self.epochs_scale * m)) for m in self.milestones}))

    def validate(self) -> None:
        """Reject values no run could use."""
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise NgfError(f"{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not 0 < self.lr < math.inf:
            raise NgfError(f"lr must be a positive number, got {self.lr!r}")
        for name in ("steps_per_call", "devices", "threads"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise NgfError(f"{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not -2 ** 63 <= self.seed < 2 ** 63:
            raise NgfError(f"seed must be an integer of at most 64 bits, got {self.seed!r}")
        ratio = self.divergence_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= math.inf:
            raise NgfError(f"divergence-ratio must be a number ≥ 0 (0 turns the loss bound off), got {ratio!r}")
        for name in ("optimizer", "schedule", "init"):
            if not isinstance(getattr(self, name), str):
                raise NgfError(f"{name} must be a name, got {getattr(self, name)!r}")
        if not isinstance(self.rule, (str, LearningRule)):
            raise NgfError(f"rule must be a registered name or a LearningRule, got {self.rule!r:.80}")
        if not (isinstance(self.model, (str, nnx.Module)) or callable(self.model)):
            raise NgfError(f"model must be a registered name, an NNX module or a factory, got {self.model!r:.80}")
        if not isinstance(self.dataset, (str, DataSplits)):
            raise NgfError(f"dataset must be a registered name or a DataSplits, got {self.dataset!r:.80}")
        for name in ("data_dir", "out", "log_csv"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (str, os.PathLike)) or not str(value).strip()):
                raise NgfError(f"{name.replace('_', '-')} must be a path, got {value!r}")
        for name in ("overwrite", "resume", "track_alignment"):
            if not isinstance(getattr(self, name), bool):
                raise NgfError(f"{name.replace('_', '-')} must be true or false, got {getattr(self, name)!r}")
        for name in ("rule_opts", "model_opts"):
            if not isinstance(getattr(self, name), dict):
                raise NgfError(f"{name} must be a dict of NAME: VALUE, got {getattr(self, name)!r}")
            owner = name[:-5]  # options of an object would be recorded in config.toml, never used
            if getattr(self, name) and not isinstance(getattr(self, owner), str):
                raise NgfError(f"{name} set a registered {owner}'s options; this {owner} is an object, "
                               f"so build it with its options instead")
        if self.schedule not in SCHEDULES:
            raise unknown_name("schedule", self.schedule, SCHEDULES)
        if self.optimizer not in OPTIMIZERS:
            raise unknown_name("optimizer", self.optimizer, OPTIMIZERS)
        parse_init(self.init)
        check_protocol(self)
        if not isinstance(self.dataset_opts, dict):
            raise NgfError(f"dataset_opts must be a dict of NAME: VALUE, got {self.dataset_opts!r}")
        if self.dataset_opts and not isinstance(self.dataset, str):
            raise NgfError("dataset_opts set a named dataset's options; this dataset is a DataSplits, so they "
                           "would not be used")
        check_log(self)
