"""Finished (or still running) runs read back from their folders, labelled by what differs."""

from __future__ import annotations

import json
from pathlib import Path

from ngf.core.errors import NgfError
from ngf.experiments.results import Result
from ngf.runs.configfile import CONFIG_FILE, read
from ngf.runs.fields import FIELDS_WITH

RUN_FILES = ("summary.json", "metrics.jsonl")
HISTORY_KEYS = ("epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy")  # what figures read


def find_runs(paths) -> list[Path]:
    """Run folders: each path that is one, else every run folder below it."""
    found = []
    for path in map(Path, paths):
        if any((path / name).is_file() for name in RUN_FILES):
            found.append(path)
            continue
        below = sorted({p.parent for name in RUN_FILES for p in path.rglob(name)})
        if not below:
            raise NgfError(f"{path} holds no run (no summary.json or metrics.jsonl in it or below it)")
        found.extend(below)
    return list(dict.fromkeys(found))


def _damaged(path: Path, why: str) -> NgfError:
    return NgfError(f"{path} is damaged: {why}; run the run again, or leave its folder out")


def _epochs(records, path: Path, where: str) -> list[dict]:
    """``records`` if each is an epoch's metrics (what the tables and figures read)."""
    for n, record in enumerate(records, 1):
        if not isinstance(record, dict) or any(key not in record for key in HISTORY_KEYS):
            raise _damaged(path, f"{where} {n} is not an epoch's metrics ({', '.join(HISTORY_KEYS)})")
    return list(records)


def read_summary(path: Path) -> dict:
    """A run's ``summary.json``, with its ``history`` of epochs; a damaged one is an ``NgfError`` naming it."""
    try:
        summary = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _damaged(path, f"not JSON ({' '.join(str(exc).split())[:80]})") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("history"), list):
        raise _damaged(path, "it holds no history of epochs")
    _epochs(summary["history"], path, "history entry")
    return summary


def read_metrics(path: Path) -> list[dict]:
    """A run's ``metrics.jsonl``, one epoch per line; a cut-off or garbled line is an ``NgfError`` naming it."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise _damaged(path, f"unreadable ({exc})") from None
    records = []
    for n, line in enumerate(lines, 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except ValueError:
                raise _damaged(path, f"line {n} is not JSON (cut off?)") from None
    return _epochs(records, path, "line")


def load_run(folder: Path) -> tuple[dict, dict]:
    """``(config record, summary)``; an unfinished run's summary holds its history so far."""
    summary = None
    if (folder / "summary.json").is_file():
        summary = read_summary(folder / "summary.json")
    config = read(folder / CONFIG_FILE) if (folder / CONFIG_FILE).is_file() else (summary or {}).get("config", {})
    if summary is None:
        history = read_metrics(folder / "metrics.jsonl")
        if not history:
            raise NgfError(f"{folder} has no finished epoch yet")
        summary = {"rule": config.get("rule", "?"), "model": config.get("model", "?"),
                   "dataset": config.get("dataset", folder.name), "epochs": len(history),
                   "seed": config.get("seed", 0), "history": history}
    return config, summary


def _flat(config: dict) -> dict:
    flat = {k: v for k, v in config.items() if not isinstance(v, dict) and k not in FIELDS_WITH["not_a_label"]}
    for table, prefix in (("rule_opts", "rule."), ("model_opts", "model.")):
        flat.update({prefix + k: v for k, v in (config.get(table) or {}).items()})
    return flat


def _text(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _differs(flats: list[dict], key: str) -> bool:
    """Whether runs that have ``key`` disagree on it; a rule's options only among runs of that rule."""
    groups: dict = {}
    for flat in flats:
        if key in flat:
            owner = _text(flat.get("rule")) if key.startswith("rule.") else ""
            groups.setdefault(owner, set()).add(_text(flat[key]))
    return any(len(values) > 1 for values in groups.values())


def auto_labels(configs: list[dict]) -> list[str]:
    """A label per run: its rule and every option whose value differs between the runs."""
    flats = [_flat(c) for c in configs]
    keys = list(dict.fromkeys(k for f in flats for k in f))
    differing = [k for k in keys if k != "rule" and _differs(flats, k)]
    return [" ".join([_text(f.get("rule", "?"))] + [f"{k}={_text(f[k])}" for k in differing if k in f])
            for f in flats]


def load_results(paths) -> list[Result]:
    """Every run under ``paths`` as a ``Result``, labelled by ``auto_labels``."""
    folders = find_runs(paths)
    loaded = [load_run(folder) for folder in folders]
    labels = auto_labels([config for config, _ in loaded])
    return [Result(label, summary.get("dataset", "?"), summary.get("seed", 0), str(folder), summary)
            for label, folder, (_, summary) in zip(labels, folders, loaded)]
