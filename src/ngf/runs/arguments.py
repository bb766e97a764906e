"""What ``ngf.run`` is handed beside its options: checked, with NumPy numbers made plain.

A dict as ``config``, a string as ``registry`` or a number as ``callbacks`` would fail
deep inside with an ``AttributeError``; here each gets one line. NumPy scalars
(``np.float32(1e-3)``, ``np.int64(3)``) are numbers: they become Python's own, in the
run options and in the rule's and model's options, so checks accept them and the
config file and summary can hold them.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ngf.core.errors import NgfError
from ngf.host.registry import Registry
from ngf.runs.callbacks import Callbacks
from ngf.runs.config import RunConfig
from ngf.runs.fields import FIELDS_WITH

CALLBACK_METHODS = ("on_start", "on_progress", "on_epoch", "on_end", "on_problem")


def check_arguments(config, registry, callbacks) -> None:
    """Refuse a ``config`` that is not a ``RunConfig``, and a ``registry`` or ``callbacks`` of the wrong kind."""
    if config is not None and not isinstance(config, RunConfig):
        hint = "; pass the options as keywords: ngf.run(**options)" if isinstance(config, dict) else ""
        raise NgfError(f"config must be a RunConfig or None, got {type(config).__name__} {config!r:.60}{hint}")
    if registry is not None and not isinstance(registry, Registry):
        raise NgfError(f"registry must be a Registry (from ngf.load_registry()) or None, got {registry!r:.80}")
    if callbacks is not None and not (isinstance(callbacks, Callbacks) or hasattr(callbacks, "wants_progress") and all(
            callable(getattr(callbacks, name, None)) for name in CALLBACK_METHODS)):
        raise NgfError(f"callbacks must be an ngf.Callbacks (subclass it, override what you need) or None, "
                       f"got {callbacks!r:.80}")


def plain(value):
    """``value`` with NumPy scalars replaced by Python numbers (inside dicts, tuples and lists too)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if type(value) in (tuple, list):
        return type(value)(plain(item) for item in value)
    return value


def plain_numbers(config: RunConfig) -> RunConfig:
    """``config`` with every NumPy scalar among its options made a Python number (a rule, model or dataset
    object of the caller's is used as it is)."""
    return dataclasses.replace(config, **{field.name: plain(getattr(config, field.name))
                                          for field in dataclasses.fields(config)
                                          if field.name not in FIELDS_WITH["object"]})
