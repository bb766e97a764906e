"""Run configurations as TOML files: read with ``tomllib``, written by a tiny writer.

Every run with an output folder writes ``DIR/config.toml``: every field of its
``RunConfig`` with the names of its rule, model and dataset, and the rule's and
model's hyperparameters complete (defaults filled in, values converted), so
``ngf run --config DIR/config.toml --out NEW`` repeats it exactly. Where the run's
files go (``out``, ``overwrite``, ``resume``) is not part of what it computes, so it
is not written; a config file may still set it. ``None`` values are left out (TOML
has no null), which reads back as the same default.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from pathlib import Path
from typing import Any

from ngf.core.errors import NgfError
from ngf.runs import atomic
from ngf.runs.config import RunConfig
from ngf.runs.fields import FIELDS_WITH, OWNER
from ngf.runs.files import CONFIG_FILE
from ngf.runs.spec import RunSpec

MAX_BYTES = 1_000_000  # a config file larger than this is not one (``--config /dev/zero``)


def _value(value: Any) -> str | None:
    """One TOML value, or None when TOML cannot hold it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if value != value else
                                                         ("inf" if value > 0 else "-inf"))
    if isinstance(value, str):
        # a JSON string is a TOML basic string, once DEL (which JSON leaves raw, TOML forbids) is escaped
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, (list, tuple)):
        items = [_value(v) for v in value]
        return None if None in items else "[" + ", ".join(items) + "]"
    return None


def _key(name: str) -> str:
    return name if name.replace("_", "").replace("-", "").isalnum() else json.dumps(name)


def _lines(table: dict) -> list[str]:
    lines = []
    for name, value in table.items():
        text = _value(value)
        if text is not None:
            lines.append(f"{_key(name)} = {text}")
        elif value is not None:
            lines.append(f"# {name}: {value!r} cannot be written in TOML")
    return lines


def dumps(record: dict, header: str = "") -> str:
    """TOML text for a flat dict plus its options tables (``rule_opts``, ``model_opts``, ``dataset_opts``)."""
    tables = FIELDS_WITH["options_table"]
    top = {k: v for k, v in record.items() if k not in tables}
    lines = [f"# {line}" for line in header.splitlines()] + _lines(top)
    for table in tables:
        if table in record:
            lines += ["", f"[{table}]"] + _lines(record[table] or {})
    return "\n".join(lines) + "\n"


def _field_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(RunConfig))


def normalise(record: dict, source: str) -> dict:
    """Check keys against ``RunConfig``'s fields (``batch-size`` is ``batch_size``)."""
    fields, out = _field_names(), {}
    for key, value in record.items():
        name = key.replace("-", "_")
        if name not in fields:
            raise NgfError(f"{source}: unknown option {key!r}; valid options: {', '.join(fields)}")
        if name in FIELDS_WITH["options_table"]:
            if not isinstance(value, dict):
                raise NgfError(f"{source}: {key} must be a table of NAME = VALUE")
            value = {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
        out[name] = value
    return out


def read(path: str | Path) -> dict:
    """The options in a TOML config file, keyed by ``RunConfig`` field."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            text = handle.read(MAX_BYTES + 1)  # not all of /dev/zero
        if len(text) > MAX_BYTES:
            raise NgfError(f"config file {path} is larger than {MAX_BYTES // 1_000_000} MB; a run's config is "
                           f"a few hundred bytes")
        record = tomllib.loads(text.decode())
    except FileNotFoundError:
        raise NgfError(f"config file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise NgfError(f"config file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise NgfError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    record.pop("plan", None)  # an experiment's [plan] (ngf.experiments.planfile): not a run option
    return normalise(record, str(path))


def read_stored(path: str | Path) -> dict:
    """A run folder's ``config.toml``, as ngf wrote it: not empty, and holding the options ngf always
    writes (``FIELDS_WITH["always_written"]``); a hand-edited file that lost one is refused in one line."""
    record = read(path)
    if not record:
        raise NgfError(f"cannot resume: {path} is empty, not the run's configuration; restore it or start a "
                       "new run in another folder")
    missing = [name for name in FIELDS_WITH["always_written"] if name not in record]
    if missing:
        raise NgfError(f"cannot resume: {path} lacks {', '.join(missing)}, which ngf always writes there (edited "
                       "by hand?); restore it or start a new run in another folder")
    return record


def resolved(config, registry, names: dict) -> dict:
    """The complete record of ``config`` that ``config.toml`` holds (``RunSpec.written``)."""
    return RunSpec.of(config, registry).written(names)


def write(out: Path | None, config, record: dict) -> None:
    """Write ``out/config.toml``, the ``record`` of the run ``config`` (``RunSpec.written``), atomically
    (nothing when the run has no folder)."""
    if out is None:
        return
    header = ("ngf run configuration, complete with defaults.\n"
              f"Repeat with: ngf run --config {Path(out) / CONFIG_FILE} --out NEW_FOLDER")
    if config.epochs_scale != 1:  # the values below stay unscaled, so a repeat or a resume scales them once
        milestones = ", ".join(map(str, config.run_milestones)) or "none"
        header += (f"\nepochs_scale {config.epochs_scale:g}: this run trains {config.run_epochs} epochs "
                   f"(of {config.epochs}), milestones {milestones}")
    atomic.write_text(Path(out) / CONFIG_FILE, dumps(record, header))


def merge(base: dict, override: dict) -> dict:
    """``override`` on top of ``base``; options tables merge by name.

    A file's ``rule_opts`` belong to the file's rule: when ``override`` names another
    rule they are dropped, and the same for ``model_opts`` and the model.
    """
    merged = dict(base)
    tables = FIELDS_WITH["options_table"]
    for key, value in override.items():
        if key in tables:
            kind = OWNER[key]  # rule, model or dataset
            keep = base.get(kind) == override.get(kind, base.get(kind))
            value = {**(base.get(key, {}) if keep else {}), **value}
        merged[key] = value
    for key in tables:
        kind = OWNER[key]
        if kind in override and override[kind] != base.get(kind) and key not in override:
            merged.pop(key, None)
    return merged


def layered(path: str | Path | None, given: dict, extra: dict | None = None) -> dict:
    """The options of the config file at ``path`` (none when ``None``), ``extra`` on top of
    them, and ``given`` (options typed on the command line, checked here) on top of all."""
    base = {**(read(path) if path else {}), **(extra or {})}
    return merge(base, normalise(given, "command line"))
