"""Hyperparameters: read them off a factory's signature and parse ``NAME=VALUE`` strings."""

from __future__ import annotations

import dataclasses
import inspect
import numbers
import re
from typing import Any, Callable

import numpy as np

from ngf.core.errors import NgfError

_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}
MODEL_POSITIONAL = ("input_shape", "n_classes", "rngs")
#: the factory arguments that are not options, per kind: a model's positional ones, a dataset's folder
NOT_OPTIONS = {"rule": (), "model": MODEL_POSITIONAL, "dataset": ("data_dir",)}


@dataclasses.dataclass(frozen=True)
class Option:
    """One keyword hyperparameter of a factory."""

    name: str
    default: Any
    help: str = ""


def _arg_docs(factory: Callable) -> dict[str, str]:
    """Descriptions from the ``Args:`` section of a Google-style docstring, continuation lines joined."""
    doc = inspect.getdoc(factory) or ""
    found, section, current, indent = {}, False, None, 0
    for line in doc.splitlines():
        if line.strip() in ("Args:", "Arguments:"):
            section = True
        elif section:
            depth = len(line) - len(line.lstrip())
            match = re.match(r"\s+(\w+)(?: \(.*?\))?:\s*(.*)", line)
            if current is not None and line.strip() and depth > indent:  # the description goes on
                found[current] = f"{found[current]} {line.strip()}".strip()
            elif match:
                current, indent = match.group(1), depth
                found[current] = match.group(2)
            elif line and not line.startswith(" "):
                section, current = False, None
    return found


def factory_options(factory: Callable, skip=MODEL_POSITIONAL) -> list[Option]:
    """The hyperparameters of ``factory``: keyword parameters with defaults."""
    docs = _arg_docs(factory)
    return [
        Option(p.name, p.default, docs.get(p.name, ""))
        for p in inspect.signature(factory).parameters.values()
        if p.name not in skip and p.default is not inspect.Parameter.empty
    ]


def parse_assignments(items, flag: str) -> dict[str, str]:
    """Turn ``["a=1", "b=x"]`` into ``{"a": "1", "b": "x"}``."""
    out = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise NgfError(f"{flag} expects NAME=VALUE, got {item!r}")
        out[name.strip()] = value.strip()
    return out


def _coerce_scalar(text: str, like: Any, label: str):
    if isinstance(like, bool):
        if text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        raise NgfError(f"{label} expects true or false, got {text!r}")
    for kind in (int, float):
        if isinstance(like, kind):
            try:
                return kind(text)
            except ValueError:
                raise NgfError(f"{label} expects {'an integer' if kind is int else 'a number'}, got {text!r}") from None
    if like is None:  # no default type to follow: a number if it looks like one
        return as_number(text)
    return text


def as_number(text: str):
    """``text`` as an int, else as a float, else as it is."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _typed(value: Any, like: Any, label: str):
    """A value given as itself (TOML, Python) where ``like`` is a bool, an int or a list of them: checked,
    never truncated (``int(16.9)`` would build a 16-wide layer while the files record 16.9)."""
    if isinstance(like, bool):
        if not isinstance(value, (bool, np.bool_)):
            raise NgfError(f"{label} expects true or false, got {value!r}")
        return bool(value)
    if isinstance(like, int):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
            raise NgfError(f"{label} expects an integer, got {value!r}")
        return int(value)
    if isinstance(like, (tuple, list)) and like and isinstance(value, (tuple, list)):
        return tuple(_typed(v, like[0], label) for v in value)
    return value


def coerce(text: Any, default: Any, label: str):
    """Convert ``text`` to the type of ``default``; tuples are comma-separated, and empty text is the
    empty tuple (``widths=`` as ``widths = []`` in a TOML file: no hidden layer).

    A value that is not text is checked instead where the default is a bool, an integer
    or a list of them (``widths = [true, 16.9]`` is refused, not read as 1-16).
    """
    if not isinstance(text, str):
        return _typed(text, default, label)
    if isinstance(default, (tuple, list)):
        like = default[0] if default else None
        if not text.strip():
            return ()
        parts = [p for p in text.replace(" ", "").split(",") if p]
        if not parts:
            raise NgfError(f"{label} expects a comma-separated list, got {text!r}")
        return tuple(_coerce_scalar(p, like, label) for p in parts)
    return _coerce_scalar(text, default, label)


def bind(kind: str, name: str, factory: Callable, given: dict, skip=MODEL_POSITIONAL) -> tuple[dict, dict]:
    """``(defaults, bound)`` from one read of ``factory``'s signature: its hyperparameters' defaults, and
    ``given`` checked against them and converted to their types."""
    options = {o.name: o for o in factory_options(factory, skip)}
    bound = {}
    for key, value in given.items():
        if key not in options:
            valid = ", ".join(options) or "(none)"
            raise NgfError(f"unknown option {key!r} for {kind} {name!r}; valid options: {valid}")
        bound[key] = coerce(value, options[key].default, f"{kind} option {key}")
    return {key: option.default for key, option in options.items()}, bound


def bind_options(kind: str, name: str, factory: Callable, given: dict, skip=MODEL_POSITIONAL) -> dict:
    """Check ``given`` against ``factory``'s hyperparameters and convert their types."""
    return bind(kind, name, factory, given, skip)[1]
