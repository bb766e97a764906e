"""The files of a run folder: their names, and how each one is written.

Every file is written atomically (``ngf.runs.atomic``: a temporary file beside it,
then a rename), so a kill leaves the previous version whole:

- ``config.toml``: the run's complete configuration (``ngf.runs.configfile``);
- ``metrics.jsonl``: one strict JSON object per finished epoch;
- ``summary.json``: the run's summary, written when it completes, diverges or is interrupted;
- ``checkpoint.msgpack``: the state after the last finished epoch (``ngf.runs.checkpoint``),
  flushed to disk before its rename;
- ``.ngf.lock``: held (``fcntl.flock``) by the one process writing the folder, holding its
  pid, and removed when it ends (``ngf.runs.lock``).

The lock file, the temporary files a kill left (``.NAME.<random>.tmp``, and the fixed
``NAME.tmp`` of earlier versions) and ``.ngf-probe-*`` files are debris: they are not a
run, do not make a folder "hold files", and are never read as a result.
"""

from __future__ import annotations

from pathlib import Path

from ngf.runs import atomic

CONFIG_FILE = "config.toml"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CHECKPOINT_FILE = "checkpoint.msgpack"
OWN_FILES = (CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, CHECKPOINT_FILE)
LOCK_FILE = ".ngf.lock"
PROBE_PREFIX = ".ngf-probe-"


def is_temporary(name: str) -> bool:
    """Whether ``name`` is a temporary file of one of ngf's own files (a kill mid-write leaves one)."""
    return name.endswith(atomic.TEMPORARY_SUFFIX) and any(
        name == own + atomic.TEMPORARY_SUFFIX or name.startswith(f".{own}.") for own in OWN_FILES)


def is_debris(name: str) -> bool:
    """Whether ``name`` is left by ngf's machinery rather than a run: the lock, a temporary or probe file."""
    return name == LOCK_FILE or name.startswith(PROBE_PREFIX) or is_temporary(name)


def holds_files(out: Path) -> bool:
    """Whether the folder ``out`` holds anything but debris (a later run would replace or mix with it)."""
    return Path(out).is_dir() and any(not is_debris(path.name) for path in Path(out).iterdir())


def holds_run(out: Path) -> bool:
    """Whether ``out`` holds a run to resume: its ``config.toml`` or its checkpoint."""
    return any((Path(out) / name).is_file() for name in (CONFIG_FILE, CHECKPOINT_FILE))


def remove_debris(out: Path) -> None:
    """Remove the temporary files that killed writes left in ``out`` (only the lock's holder may)."""
    for path in Path(out).iterdir():
        if is_temporary(path.name) and (path.is_file() or path.is_symlink()):
            path.unlink(missing_ok=True)  # a link is removed, never followed


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
        path = Path(out) / name
        if path.is_file() or path.is_symlink():
            path.unlink(missing_ok=True)
    remove_debris(out)
