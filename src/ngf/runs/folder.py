"""The run folder (``out``): refused before any work if unusable, prepared, and cleaned up.

``check`` runs before the data and the model are loaded, ``prepare`` just before the
first file is written, and ``discard`` removes what a run that failed before its
first epoch wrote, so that nothing looks like a result.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ngf.core.errors import NgfError
from ngf.runs import checkpoint
from ngf.runs.config import RunConfig
from ngf.runs.files import CHECKPOINT_FILE, CONFIG_FILE, remove_own_files


def check(config: RunConfig) -> None:
    """Refuse an ``out`` that cannot be used, before anything is loaded or written."""
    if config.out is None:
        if config.resume:
            raise NgfError("resume needs the run's folder (out, or ngf run --resume DIR)")
        return
    out = Path(config.out)
    try:
        if out.exists() and not out.is_dir():
            raise NgfError(f"--out {out} exists and is not a folder")
        if config.resume:
            if not out.is_dir():
                raise NgfError(f"cannot resume: {out} does not exist")
            if not any((out / name).is_file() for name in (CHECKPOINT_FILE, CONFIG_FILE)):
                raise NgfError(f"cannot resume: {out} holds no run ({CHECKPOINT_FILE} does not exist)")
            checkpoint.check_readable(out)  # before the data and the model are loaded
        elif out.is_dir() and any(out.iterdir()) and not config.overwrite:
            raise NgfError(f"--out {out} already holds files; choose another folder or pass --overwrite")
        for above in out.parents:  # the first folder that exists must be a folder
            if above.exists():
                if not above.is_dir():
                    raise NgfError(f"cannot write to --out {out}: {above} is not a folder")
                break
    except OSError as exc:
        raise NgfError(f"cannot use --out {out}: {exc.strerror or exc}") from None
    _probe(out)


def _probe(out: Path) -> None:
    """Fail now, not after loading the data, if ``out`` cannot be created or written to.

    Creates ``out`` (and missing parents) and a temporary file in it, then removes
    exactly what it created.
    """
    missing = [folder for folder in (out, *out.parents) if not folder.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=".ngf-probe-", dir=out)
        os.close(handle)
        os.unlink(name)
    except OSError as exc:
        raise NgfError(f"cannot write to --out {out}: {exc.strerror or exc}") from None
    finally:
        for folder in missing:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                pass


def prepare(config: RunConfig) -> tuple[Path | None, Path | None]:
    """Create ``out`` (and missing parents) and clear a previous run's files from it.

    Returns ``(out, created)``: ``created`` is the topmost folder this call made, which
    ``discard`` removes if the run fails before its first epoch. Only ngf's own files
    are removed from an existing folder (``--overwrite``); nothing else in it is touched.
    """
    if config.out is None:
        return None, None
    out = Path(config.out)
    created = None
    for folder in (out, *out.parents):
        if folder.exists():
            break
        created = folder
    try:
        out.mkdir(parents=True, exist_ok=True)
        if not config.resume:
            remove_own_files(out)
    except OSError as exc:
        raise NgfError(f"cannot write to --out {out}: {exc.strerror or exc}") from None
    return out, created


def discard(out: Path | None, created: Path | None, config: RunConfig) -> None:
    """Remove what a run that failed before its first epoch wrote, so nothing looks like a result."""
    if out is None or config.resume or (out / CHECKPOINT_FILE).exists():
        return
    remove_own_files(out)
    if created is not None:  # the folders this run made, deepest first, if nothing else is in them
        for folder in (out, *out.parents):
            try:
                folder.rmdir()
            except OSError:
                break
            if folder == created:
                break
