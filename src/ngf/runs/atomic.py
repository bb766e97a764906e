"""Writes that a kill cannot leave half done: a temporary file beside the target, then a rename.

The temporary file is ``NAME.tmp`` in the same folder, so the rename stays on one file
system and is atomic; a kill before it leaves the old file whole (and a stray
``NAME.tmp``, which the next write replaces). A rename replaces a symbolic link at
``path`` rather than writing through it, so nothing outside the folder is touched.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any


def write_bytes(path: Path, data: bytes, sync: bool = False) -> None:
    """Write ``data`` to ``path`` atomically; ``sync`` flushes it to disk before the rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        if sync:
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(tmp, path)


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
