"""Writes that a kill cannot leave half done: a temporary file beside the target, then a rename.

The temporary file is ``.NAME.<random>.tmp`` in the same folder, so the rename stays on
one file system and is atomic; a kill before it leaves the old file whole (and a stray
temporary file, which ``ngf.runs.files.remove_debris`` clears). It is created with
``O_CREAT | O_EXCL | O_NOFOLLOW`` under a name no one could have prepared, so a link
planted in the folder is never written through; the rename replaces a symbolic link
at ``path`` rather than following it, so nothing outside the folder is touched.
"""

from __future__ import annotations

import json
import math
import os
import secrets
from pathlib import Path
from typing import Any

TEMPORARY_SUFFIX = ".tmp"
_EXCLUSIVE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def temporary_name(path: Path) -> Path:
    """A fresh temporary name beside ``path``: ``.NAME.<16 random hex digits>.tmp``."""
    return path.with_name(f".{path.name}.{secrets.token_hex(8)}{TEMPORARY_SUFFIX}")


def _create_exclusive(path: Path) -> tuple[int, Path]:
    """Create a new temporary file beside ``path``; never one that exists, nor through a link."""
    for _ in range(100):
        tmp = temporary_name(path)
        try:
            return os.open(tmp, _EXCLUSIVE, 0o666), tmp  # 0o666: the umask applies, as for open()
        except FileExistsError:  # 2^-64 per try
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def write_bytes(path: Path, data: bytes, sync: bool = False) -> None:
    """Write ``data`` to ``path`` atomically; ``sync`` flushes it to disk before the rename."""
    path = Path(path)
    handle, tmp = _create_exclusive(path)
    try:
        with open(handle, "wb") as stream:
            stream.write(data)
            if sync:
                stream.flush()
                os.fsync(stream.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str, sync: bool = False) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"), sync)


def finite_or_none(value: Any) -> Any:
    """``value`` with every NaN or infinity (in dicts and lists too) replaced by ``None``.

    JSON has no NaN or infinity; strict readers reject Python's ``NaN`` tokens.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def write_json(path: Path, payload: Any) -> None:
    """Write ``payload`` as indented, strict JSON (non-finite numbers as null), atomically."""
    write_text(path, json.dumps(finite_or_none(payload), indent=2, allow_nan=False) + "\n")


def write_jsonl(path: Path, records: list) -> None:
    """Write one strict JSON object per line, atomically."""
    write_text(path, "".join(json.dumps(finite_or_none(r), allow_nan=False) + "\n" for r in records))
