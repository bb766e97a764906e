"""What an experiment runs: every rule × grid point × dataset × seed, each in its own folder.

Grid keys (``--grid KEY=V1,V2,...``), resolved in this order:

1. ``rule.NAME`` or ``model.NAME``: a hyperparameter of the rule or of the model;
2. a run option, with ``-`` or ``_``: ``lr``, ``batch_size``, ``optimizer``, ``init``,
   ``schedule``, ``epochs``, ``model``, ...: any field of ``RunConfig`` but the ones the
   experiment sets itself (``rule``, ``dataset``, ``seed``, ``out``...);
3. any other plain name: the rule's hyperparameter of that name if the rule has one,
   else the model's; an error if neither has it.

Values are separated by commas, or by semicolons when a value is itself a list
(``model.widths=256,256;64,64``).
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import NamedTuple

from ngf.core.errors import NgfError
from ngf.data.forms import is_form
from ngf.host.options import NOT_OPTIONS, coerce, factory_options
from ngf.runs.config import RunConfig
from ngf.runs.fields import FIELDS_WITH


class Planned(NamedTuple):
    """One run of an experiment."""

    label: str  # the variant: the rule, and the grid point if any
    dataset: str
    seed: int
    folder: Path
    config: RunConfig
    point: tuple = ()  # the grid point: ((key, value text), ...)


def split_list(text: str, flag: str, kind=str) -> list:
    """``"a,b"`` → ``["a", "b"]``, converted by ``kind``."""
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise NgfError(f"{flag} expects a comma-separated list, got {text!r}")
    try:
        values = [kind(t) for t in items]
    except ValueError:
        raise NgfError(f"{flag} expects a comma-separated list of integers, got {text!r}") from None
    repeated = [v for i, v in enumerate(values) if v in values[:i]]
    if repeated:  # the same run twice would count as two seeds or variants (± 0.00)
        raise NgfError(f"{flag} lists {repeated[0]} twice; give each once")
    return values


def parse_grid(items) -> list[tuple[str, list[str]]]:
    """``["lr=1e-3,1e-2", "init=he"]`` → ``[("lr", ["1e-3", "1e-2"]), ("init", ["he"])]``."""
    grid = []
    for item in items or ():
        key, sep, values = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise NgfError(f"--grid expects KEY=V1,V2,..., got {item!r}")
        parts = [v.strip() for v in values.split(";" if ";" in values else ",") if v.strip()]
        if not parts:
            raise NgfError(f"--grid {key} has no values")
        if key in dict(grid):
            raise NgfError(f"--grid {key} is given twice")
        grid.append((key, once_each(parts, f"--grid {key}")))
    return grid


def once_each(values: list, what: str) -> list:
    """``values`` if none is repeated: the same grid point twice would train one folder twice."""
    repeated = [v for i, v in enumerate(values) if v in values[:i]]
    if repeated:
        raise NgfError(f"{what} lists {repeated[0]} twice; give each once")
    return values


def _option_names(registry, kind: str, name) -> set[str]:
    if not isinstance(name, str):
        return set()
    return {o.name for o in factory_options(registry.get(kind, name).factory, NOT_OPTIONS[kind])}


def grid_target(config: RunConfig, key: str, registry) -> tuple[str, str]:
    """What grid ``key`` sets in ``config``: ``("run", field)``, ``("rule", option)`` or ``("model", option)``
    (see the module docstring for the order); ``batch-size`` and ``batch_size`` are one target."""
    scope, dot, name = key.partition(".")
    if dot and scope in ("rule", "model"):
        return scope, name
    run_key = key.replace("-", "_")
    if run_key in {f.name for f in dataclasses.fields(RunConfig)} and run_key not in FIELDS_WITH["not_gridded"]:
        return "run", run_key
    for scope in ("rule", "model"):
        if key in _option_names(registry, scope, getattr(config, scope)):
            return scope, key
    raise NgfError(f"--grid {key}: not a run option, nor an option of rule {config.rule!r} "
                   f"or model {config.model!r}")


def _set(config: RunConfig, key: str, value: str, registry) -> RunConfig:
    """``config`` with grid ``key`` set to ``value``."""
    scope, name = grid_target(config, key, registry)
    if scope == "run":
        default = {f.name: f for f in dataclasses.fields(RunConfig)}[name].default
        return dataclasses.replace(config, **{name: coerce(value, default, f"--grid {key}")})
    field = f"{scope}_opts"
    return dataclasses.replace(config, **{field: {**getattr(config, field), name: value}})


def _set_point(config: RunConfig, point: tuple, registry) -> RunConfig:
    """``config`` with every ``(key, value)`` of a grid point set; two keys naming one target are refused."""
    seen: dict = {}
    for key, value in point:
        target = grid_target(config, key, registry)
        if target in seen:  # aliases (batch-size, batch_size; beta, rule.beta) would run once under two labels
            scope, name = target
            raise NgfError(f"--grid {seen[target]} and --grid {key} both set "
                           f"{name if scope == 'run' else scope + '.' + name}; give one of them")
        seen[target] = key
        config = _set(config, key, value, registry)
    return config


def rule_opts_for(rule: str, opts: dict, registry, rules) -> dict:
    """The ``--rule-opt`` values that apply to ``rule``.

    ``RULE.NAME=VALUE`` applies to that rule only; a plain ``NAME=VALUE`` to every
    rule of the experiment that has an option ``NAME`` (and at least one must).
    """
    mine = {}
    for key, value in opts.items():
        owner, dot, name = key.rpartition(".")
        if dot:
            if owner == rule:
                mine[name] = value
        elif key in _option_names(registry, "rule", rule):
            mine[key] = value
        elif not any(key in _option_names(registry, "rule", r) for r in rules):
            raise NgfError(f"--rule-opt {key}: none of the rules {', '.join(rules)} has that option")
    return mine


def slug(text: str) -> str:
    """A folder name for a label."""
    return text.replace(" ", "_").replace("/", "-").replace(",", "+") or "run"


def plan(base: RunConfig, rules, datasets, seeds, grid, out: Path, registry,
         by_rule: dict | None = None) -> list[Planned]:
    """Every run of the experiment, in order: rule, grid point, dataset, seed.

    ``by_rule`` maps a rule to run options for its runs alone (a config file's
    ``[plan.by_rule.RULE]``, ``ngf.experiments.planfile``); a grid point goes on top.
    """
    for kind, names in (("rule", rules), ("dataset", datasets), ("model", [base.model])):
        for name in names:  # fail on a misspelt name before the first run, not after hours
            if isinstance(name, str) and not (kind == "dataset" and is_form(name)):  # hf:..., folder:...
                registry.get(kind, name)
    runs = []
    points = list(itertools.product(*[[(k, v) for v in values] for k, values in grid]))
    for rule in rules:
        opts = rule_opts_for(rule, base.rule_opts, registry, rules)
        for point in points:
            own = (by_rule or {}).get(rule, {})
            config = _set_point(dataclasses.replace(base, rule=rule, rule_opts=opts, **own), point, registry)
            label = " ".join([rule] + [f"{k}={v}" for k, v in point])
            for dataset, seed in itertools.product(datasets, seeds):
                folder = Path(out) / slug(dataset) / slug(label) / f"seed{seed}"
                runs.append(Planned(label, dataset, seed, folder,
                                    dataclasses.replace(config, dataset=dataset, seed=seed, out=str(folder),
                                                        experiment=str(out)),  # loggers group the runs by it
                                    point))
    return runs
