"""Can a file be written where an option says? Asked before the work that would fill it.

``--log-csv PATH`` and the figures' ``--out FILE`` are checked as ``--out DIR`` is: the
first folder that exists above the file must be a folder, and a file must be creatable
in the file's folder (a probe, removed again, as are any folders made for it). An
existing file is opened for appending, which leaves it as it was.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from ngf.core.errors import NgfError

PROBE_PREFIX = ".ngf-probe-"


def check_writable_file(path, flag: str) -> Path:
    """``path`` as a ``Path`` if ``flag``'s file can be written there; else ``NgfError`` on one line."""
    path = Path(path)
    if path.is_dir():
        raise NgfError(f"{flag} {path} is a folder; give a file name")
    for above in path.parents:  # the first folder that exists must be a folder
        if above.exists():
            if not above.is_dir():
                raise NgfError(f"cannot write to {flag} {path}: {above} is not a folder")
            break
    missing = [folder for folder in path.parents if not folder.exists()]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            with open(path, "a"):
                pass
        else:
            handle, name = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=path.parent)
            os.close(handle)
            os.unlink(name)
    except OSError as exc:
        raise NgfError(f"cannot write to {flag} {path}: {exc.strerror or exc}") from None
    finally:
        for folder in missing:  # deepest first: leave no trace of the probe
            try:
                folder.rmdir()
            except OSError:
                pass
    return path


@contextlib.contextmanager
def writing(what: str):
    """Turn an ``OSError`` while writing ``what`` (a full disk, a folder gone) into one ``NgfError`` line."""
    try:
        yield
    except OSError as exc:
        where = exc.filename or what
        raise NgfError(f"cannot write {where}: {exc.strerror or exc}") from None
