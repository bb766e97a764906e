"""What a run's checkpoint says about the run that wrote it, checked when the run resumes.

A checkpoint holds the run's identity: a fingerprint of its configuration (every option
a resume must keep, ``ngf.runs.resuming.comparable``: not ``epochs`` nor where files and
logs go) and one of the data it trained on (the bytes of every split, whatever source
they came from: a folder, the Hub or the Python API). A resume whose ``config.toml`` was
edited, whose checkpoint was copied from another run, or whose dataset now resolves to
other files is refused in one line instead of continuing another run under this one's name.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ngf.core.errors import NgfError


def of_run(comparable: dict, splits, dataset: str) -> dict:
    """The identity a run's checkpoints record: its configuration's and its data's fingerprints."""
    return {"config": config_fingerprint(comparable), "data": data_fingerprint(splits), "dataset": dataset}


def config_fingerprint(comparable: dict) -> str:
    """A digest of the options a resume must keep (``resuming.comparable``'s record)."""
    text = json.dumps(comparable, sort_keys=True, default=repr)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def data_fingerprint(splits) -> str:
    """A digest of the training and test arrays (shapes, dtypes and bytes) and the class count."""
    digest = hashlib.blake2b(digest_size=16)
    for array in (*splits[:4], np.asarray(splits.n_classes)):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def check(out: Path, stored: dict | None, identity: dict | None) -> None:
    """Refuse to resume ``out`` if the checkpoint's ``stored`` identity is not this run's ``identity``
    (a checkpoint that records none, from an earlier ngf, is taken as it is)."""
    if not stored or not identity:
        return
    if stored.get("config") != identity.get("config"):
        raise NgfError(f"cannot resume {out}: its config.toml does not describe the run its checkpoint holds "
                       "(config.toml edited, or the checkpoint copied from another run); start a new run "
                       "in another folder")
    if stored.get("data") != identity.get("data"):
        raise NgfError(f"cannot resume {out}: dataset {identity.get('dataset')!r} now loads other data than the run trained on "
                       "(--data-dir or $NGF_DATA_DIR pointing elsewhere?); point it back at that data or start "
                       "a new run in another folder")
