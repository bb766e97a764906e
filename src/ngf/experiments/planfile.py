"""The ``[plan]`` table of a config file: what ``ngf compare`` / ``ngf sweep --config FILE`` run.

A config file holds a run's options at its top level (``ngf run --config``) and may
hold the experiment itself in a ``[plan]`` table, so a published setup is one file
(``docs/reproductions/``)::

    [plan]
    rules = ["bp", "fa", "dfa"]
    datasets = ["mnist", "fashion-mnist"]
    seeds = [0]
    [plan.grid]                      # as --grid KEY=V1,V2: one list of values per key
    "model.widths" = [[800], [800, 800]]
    [plan.by_rule.dfa]               # run options for one rule's runs only (papers tune lr per rule)
    lr = 1e-4

Options given on the command line win: ``--rules``, ``--datasets`` and ``--seeds``
replace the file's lists, and a ``--grid KEY=...`` replaces that key's values. A
``by_rule`` table's options go on top of the file's for that rule's runs, the options
typed on the command line on top of both, and a grid point on top of all.
``ngf run --config FILE`` reads the same file and ignores its ``[plan]``.
"""

from __future__ import annotations

import numbers
import tomllib
from pathlib import Path

from ngf.core.errors import NgfError
from ngf.experiments.plan import once_each
from ngf.runs.configfile import MAX_BYTES, normalise
from ngf.runs.fields import FIELDS_WITH

PLAN_KEYS = ("rules", "datasets", "seeds", "grid", "by_rule")


def read_plan(path: str | Path | None) -> dict:
    """The checked ``[plan]`` table of the config file at ``path``; {} without a file or a table.

    The file itself (size, TOML) was checked when its options were read.
    """
    if not path:
        return {}
    with open(path, "rb") as handle:
        plan = tomllib.loads(handle.read(MAX_BYTES).decode()).get("plan", {})
    where = f"config file {path}, [plan]"
    if not isinstance(plan, dict):
        raise NgfError(f"{where} must be a table with {', '.join(PLAN_KEYS)}")
    unknown = sorted(set(plan) - set(PLAN_KEYS))
    if unknown:
        raise NgfError(f"{where}: unknown key {unknown[0]!r}; valid keys: {', '.join(PLAN_KEYS)}")
    for key in ("rules", "datasets"):
        if key in plan and not _list_of(plan[key], str):
            raise NgfError(f"{where}: {key} must be a non-empty list of names, each once, got {plan[key]!r}")
    if "seeds" in plan and not _list_of(plan["seeds"], numbers.Integral):
        raise NgfError(f"{where}: seeds must be a non-empty list of integers, each once, got {plan['seeds']!r}")
    return {**plan, "grid": _grid(plan.get("grid", {}), where), "by_rule": _by_rule(plan, where)}


def _by_rule(plan: dict, where: str) -> dict:
    """``{rule: {RunConfig field: value}}``, each rule one of the plan's and each key a run option."""
    table = plan.get("by_rule", {})
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise NgfError(f"{where}: by_rule must hold one table of run options per rule, e.g. [plan.by_rule.dfa]")
    stray = sorted(set(table) - set(plan.get("rules", table)))
    if stray:
        raise NgfError(f"{where}: by_rule.{stray[0]} names a rule that is not in the plan's rules")
    checked = {}
    for rule, options in table.items():
        record = normalise(options, f"{where}.by_rule.{rule}")
        fixed = sorted(set(record) & set(FIELDS_WITH["not_gridded"]))
        if fixed:
            raise NgfError(f"{where}.by_rule.{rule}: {fixed[0]} is set by the experiment, not per rule")
        checked[rule] = record
    return checked


def _list_of(value, kind) -> bool:
    return (isinstance(value, list) and bool(value)
            and all(isinstance(v, kind) and not isinstance(v, bool) for v in value)
            and len(set(value)) == len(value))  # hashable by now: names or integers


def _grid(table, where: str) -> list[tuple[str, list[str]]]:
    """``{"lr": [1e-3, 1e-2], "model.widths": [[800], [800, 800]]}`` → ``[("lr", ["0.001", "0.01"]), ...]``,
    the values as ``--grid`` text (a list's items joined by commas), checked as ``--grid`` checks them."""
    if not isinstance(table, dict):
        raise NgfError(f"{where}: grid must be a table of KEY = [VALUE, ...]")
    grid = []
    for key, values in table.items():
        if not isinstance(values, list) or not values:
            raise NgfError(f"{where}: grid {key} must be a non-empty list of values, got {values!r}")
        texts = [_text(v, f"{where}: grid {key}") for v in values]
        grid.append((key, once_each(texts, f"{where}: grid {key}")))
    return grid


def _text(value, where: str) -> str:
    """A grid value as ``--grid`` text: a number, a name, true/false, or a list of those (``8,8``)."""
    if isinstance(value, list) and value and not any(isinstance(v, (list, dict)) for v in value):
        return ",".join(_text(v, where) for v in value)
    if isinstance(value, (list, dict)):
        raise NgfError(f"{where}: a value must be a number, a name, true/false, or a non-empty list of those "
                       f"(one level: [800, 800]), got {value!r}"[:300])
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def merged_grid(from_file: list, given: list) -> list:
    """The file's grid with each key given on the command line replaced by its values there."""
    replaced = {key for key, _ in given}
    return [(k, v) for k, v in from_file if k not in replaced] + list(given)
