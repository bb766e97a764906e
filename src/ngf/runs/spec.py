"""A run spec: what a run computes, with its rule's, model's and dataset's options bound once.

``RunSpec.of(config, registry)`` is the one place a run's options meet their factories:
each registered rule, model and dataset reads its factory's signature once, and checks
and types its options against it (``ngf.host.options.bind``); the rule's and model's are
completed with every default. Everything else reads the spec:

- the objects the run builds (``ngf.runs.resolve``) take ``bound[table]``;
- its ``config.toml`` is ``written(names)`` (``ngf.runs.configfile``);
- its checkpoints' fingerprint digests ``labelled(...)`` (``ngf.runs.identity``);
- "is this the same run?" is ``differences(stored)`` against a ``config.toml``, minus the
  options the question leaves free: a resume's (``FIELDS_WITH["may_differ_on_resume"]``),
  an experiment's folder read back (``ngf.experiments.runner``).

A ``config.toml`` is compared as it stands, never bound again: an option it lacks is the
factory's default (a file written before the option existed describes a run at that
default), and a field it lacks is ``RunConfig``'s default. Where and how the run goes
(its folder, loggers, threads, devices) is in ``config`` too, but never changes what it
computes: those fields play the roles ``not_written`` or ``may_differ_on_resume``.
"""

from __future__ import annotations

import dataclasses
import os
import types
from typing import Any, Iterator, Mapping

from ngf.data.forms import form_loader
from ngf.host.options import NOT_OPTIONS, bind
from ngf.host.registry import Entry, Registry
from ngf.runs.config import RunConfig
from ngf.runs.fields import FIELDS_WITH, OWNER

FROZEN = types.MappingProxyType


def entry_of(kind: str, name: str, registry: Registry) -> Entry:
    """The registered factory of ``kind`` named ``name``; a dataset form (``hf:...``) is its own entry."""
    loader = form_loader(name) if kind == "dataset" else None
    return Entry(name, loader, "ngf", "dataset") if loader is not None else registry.get(kind, name)


def plain(value: Any) -> Any:
    """A value as TOML gives it back: lists as tuples, paths as text."""
    if isinstance(value, (list, tuple)):
        return tuple(plain(v) for v in value)
    return os.fspath(value) if isinstance(value, os.PathLike) else value


@dataclasses.dataclass(frozen=True, eq=False)
class RunSpec:
    """A run's configuration with the options of its registered rule, model and dataset bound to their
    factories (checked, typed; the rule's and model's complete). Immutable."""

    config: RunConfig  # a copy of the config it was made from, never changed
    bound: Mapping[str, Mapping]  # per options table: the options the factory is called with
    defaults: Mapping[str, Mapping]  # per options table: the factory's defaults (empty for an object)
    entries: Mapping[str, Entry]  # per registered rule, model and dataset: its factory

    @classmethod
    def of(cls, config: RunConfig, registry: Registry) -> "RunSpec":
        """Bind ``config``'s options to its rule's, dataset's and model's factories (in that order, the
        order a run resolves them); bad names or options raise ``NgfError``."""
        bound, defaults, entries = {}, {}, {}
        for kind in ("rule", "dataset", "model"):
            table, named = f"{kind}_opts", getattr(config, kind)
            given = getattr(config, table)
            if not isinstance(named, str):  # an object of the Python API: used as it is, with no options
                bound[table], defaults[table] = FROZEN(dict(given)), FROZEN({})
                continue
            entry = entries[kind] = entry_of(kind, named, registry)
            known, options = bind(kind, named, entry.factory, given, skip=NOT_OPTIONS[kind])
            if table in FIELDS_WITH["completed"]:  # the rule's and model's: every default filled in
                defaults[table], options = FROZEN(known), {**known, **options}
            else:
                defaults[table] = FROZEN({})
            bound[table] = FROZEN(options)
        return cls(dataclasses.replace(config), FROZEN(bound), FROZEN(defaults), FROZEN(entries))

    def written(self, names: Mapping) -> dict:
        """The record ``config.toml`` holds: every option but where the run's files go, ``names`` for
        the rule, model and dataset, the rule's and model's options complete."""
        config = self.config
        record = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
                  if f.name not in FIELDS_WITH["not_written"]}
        record.update(names)
        for table in FIELDS_WITH["completed"]:  # rule_opts, model_opts
            record[table] = dict(self.bound[table])
        for name in FIELDS_WITH["written_when_set"]:
            if not record[name]:
                del record[name]
        return record

    def labelled(self, leaving: tuple = ()) -> dict:
        """``{label: value}`` of every option but the ``leaving`` ones and the objects of the Python API
        (and their options tables); an options table's entries are labelled ``"rule option beta"``."""
        return dict(self._labelled(self._values(), leaving))

    def differences(self, stored: Mapping, leaving: tuple) -> Iterator[tuple[str, Any, Any]]:
        """``(label, value in stored, value here)`` for each option the ``stored`` record (a ``config.toml``)
        gives another value, in the order ``RunConfig`` declares them, less the ``leaving`` ones."""
        theirs = dict(self._labelled(self._stored_values(stored), leaving))
        mine = self.labelled(leaving)
        for label in dict.fromkeys([*theirs, *mine]):
            if theirs.get(label) != mine.get(label):
                yield label, theirs.get(label), mine.get(label)

    def _values(self) -> dict:
        """Every field's value, the rule's and model's options complete (a dataset's as given: so its
        ``config.toml`` and fingerprint record them)."""
        values = {f.name: getattr(self.config, f.name) for f in dataclasses.fields(self.config)}
        return {**values, **{table: self.bound[table] for table in FIELDS_WITH["completed"]}}

    def _stored_values(self, stored: Mapping) -> dict:
        """Every field's value in a stored record: a field it lacks at ``RunConfig``'s default, an option of
        this run's own rule or model it lacks at the factory's default."""
        values = {f.name: stored.get(f.name, f.default)
                  for f in dataclasses.fields(RunConfig) if f.name not in FIELDS_WITH["options_table"]}
        for table in FIELDS_WITH["options_table"]:
            own = values[OWNER[table]] == getattr(self.config, OWNER[table])
            values[table] = {**(self.defaults[table] if own else {}), **stored.get(table, {})}
        return values

    def _labelled(self, values: dict, leaving: tuple) -> Iterator[tuple[str, Any]]:
        for field in dataclasses.fields(RunConfig):
            name = field.name
            if name in leaving or name in FIELDS_WITH["object"] and not isinstance(getattr(self.config, name), str):
                continue
            if name in FIELDS_WITH["completed"]:
                kind = OWNER[name]
                if not isinstance(getattr(self.config, kind), str):
                    continue  # an object's options: none here, and a stored record's are another object's
                yield from ((f"{kind} option {key}", plain(value)) for key, value in values[name].items())
            else:
                yield name, plain(values[name])
