"""The files of a run folder: their names, and how each one is written.

Every file is written atomically (``ngf.runs.atomic``: a temporary file beside it,
then a rename), so a kill leaves the previous version whole:

- ``config.toml``: the run's complete configuration (``ngf.runs.configfile``);
- ``metrics.jsonl``: one strict JSON object per finished epoch;
- ``summary.json``: the run's summary, written when it completes, diverges or is interrupted;
- ``checkpoint.msgpack``: the state after the last finished epoch (``ngf.runs.checkpoint``),
  flushed to disk before its rename.
"""

from __future__ import annotations

from pathlib import Path

from ngf.runs import atomic

CONFIG_FILE = "config.toml"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CHECKPOINT_FILE = "checkpoint.msgpack"
OWN_FILES = (CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, CHECKPOINT_FILE)


def write_metrics(out: Path | None, history: list) -> None:
    """``out/metrics.jsonl``: one line per epoch of ``history`` (nothing when the run has no folder)."""
    if out is not None:
        atomic.write_jsonl(Path(out) / METRICS_FILE, history)


def write_summary(out: Path | None, summary: dict) -> None:
    """``out/summary.json`` (nothing when the run has no folder)."""
    if out is not None:
        atomic.write_json(Path(out) / SUMMARY_FILE, summary)


def remove_summary(out: Path) -> None:
    """Remove ``out/summary.json``: a resumed run's old summary no longer holds."""
    (Path(out) / SUMMARY_FILE).unlink(missing_ok=True)


def remove_own_files(out: Path) -> None:
    """Remove ngf's own files (and their temporary files) from ``out``; nothing else is touched."""
    for name in OWN_FILES:
        for path in (Path(out) / name, Path(out) / (name + ".tmp")):
            if path.is_file() or path.is_symlink():
                path.unlink(missing_ok=True)
