"""Checkpoints after every epoch, and resuming from the last complete one.

A checkpoint is ``DIR/checkpoint.msgpack``: flax's msgpack encoding (no pickle, so
loading one runs no code) of a dict holding the epoch, the history so far and every
leaf of the ``TrainState`` (parameters, optimiser state, rule state, the rule's trainable
parameters and their optimiser state, the step key and count) as an array.
Structure comes from the run itself: on resume the freshly initialised state is the
template whose leaves the stored ones replace, so a checkpoint only loads into the
run that wrote it. PRNG keys are stored as their raw key data. It also records the run's
identity (``ngf.runs.identity``: fingerprints of its configuration and its data) and a checksum
of everything it holds, both checked when the run resumes (since format 2; a format-2 file
without them is read as it is).

It is written to a temporary file, flushed to disk and renamed over the old one, so
a kill during the write leaves the previous checkpoint intact. Epoch ``e`` draws its
permutation from ``fold_in(data_key, e)`` and a rule's randomness lives in its state or
comes from the step key, ``fold_in(key, step)``, so restoring the state and the epoch count
continues the run exactly.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from ngf.core.errors import NgfError
from ngf.runs import atomic
from ngf.runs import identity as identify
from ngf.runs.files import CHECKPOINT_FILE, CONFIG_FILE, write_metrics

CHECKPOINT = CHECKPOINT_FILE
#: 2: the state holds the rule's trainable parameters, their optimiser state, the step key and the step count
FORMAT = 2


def _is_key(leaf) -> bool:
    return jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key)


def _to_numpy(leaf) -> np.ndarray:
    return np.asarray(jax.random.key_data(leaf) if _is_key(leaf) else leaf)


def encode(state, epoch: int, history: list, wall_seconds: float = 0.0, identity: dict | None = None) -> bytes:
    """The bytes of a checkpoint of ``state`` after ``epoch`` epochs and ``wall_seconds`` of every process,
    with the run's ``identity`` (``ngf.runs.identity``) and a checksum of what it holds."""
    leaves = jax.device_get([_to_numpy(leaf) for leaf in jax.tree.leaves(state)])
    payload = {"format": FORMAT, "epoch": epoch, "history": json.dumps(history), "wall_seconds": float(wall_seconds),
               "identity": json.dumps(identity), "leaves": {f"{i:05d}": leaf for i, leaf in enumerate(leaves)}}
    payload["checksum"] = checksum(payload)
    return serialization.msgpack_serialize(payload)


def checksum(payload: dict) -> str:
    """A digest of a payload's epoch, history, identity and every leaf's dtype, shape and bytes."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps([payload["epoch"], payload["history"], payload.get("identity")]).encode())
    for key in sorted(payload["leaves"]):
        leaf = np.ascontiguousarray(payload["leaves"][key])
        digest.update(f"{key}{leaf.dtype.str}{leaf.shape}".encode())
        digest.update(memoryview(leaf).cast("B"))
    return digest.hexdigest()


def decode(blob: bytes, template) -> tuple[object, int, list]:
    """``(state, epoch, history)`` from checkpoint bytes, shaped like ``template``."""
    return _restore(serialization.msgpack_restore(blob), template)


def _restore(payload: dict, template) -> tuple[object, int, list]:
    """``(state, epoch, history)`` from a checkpoint's payload, shaped like ``template``."""
    leaves, treedef = jax.tree.flatten(template)
    stored = [payload["leaves"][k] for k in sorted(payload["leaves"])]
    if payload.get("format") == 1:
        raise NgfError("the checkpoint was written by an earlier ngf (checkpoint format 1, without the step "
                       "count and key that rules now receive) and cannot be resumed by this one: run it afresh")
    if payload.get("format") != FORMAT or len(stored) != len(leaves):
        raise NgfError("the checkpoint does not match this run (another model, rule or optimiser?)")
    restored = []
    for old, new in zip(leaves, stored):
        if _is_key(old):
            restored.append(jax.random.wrap_key_data(jnp.asarray(new), impl=jax.random.key_impl(old)))
            continue
        if tuple(old.shape) != tuple(new.shape):
            raise NgfError(f"the checkpoint holds an array of shape {new.shape} where this run has {old.shape}")
        restored.append(jnp.asarray(new, dtype=old.dtype))
    return jax.tree.unflatten(treedef, restored), int(payload["epoch"]), json.loads(payload["history"])


def save(out: Path | None, state, history: list, wall_seconds: float = 0.0, identity: dict | None = None) -> None:
    """Write the checkpoint after ``len(history)`` epochs: temporary file, fsync, rename."""
    if out is None:
        return
    atomic.write_bytes(Path(out) / CHECKPOINT, encode(state, len(history), history, wall_seconds, identity),
                       sync=True)


def load(out: Path, template) -> tuple[object, list]:
    """``(state, history)`` from ``out``'s checkpoint."""
    state, history, _ = _load(out, template)
    return state, history


def _load(out: Path, template, identity: dict | None = None) -> tuple[object, list, float]:
    """``(state, history, wall seconds of the processes so far)`` from ``out``'s checkpoint, which must be
    whole (its checksum) and the run ``identity`` describes."""
    path = Path(out) / CHECKPOINT
    if not path.is_file():
        raise NgfError(f"cannot resume: {path} does not exist (no epoch of that run finished)")
    try:
        payload = serialization.msgpack_restore(path.read_bytes())
        if "checksum" in payload and payload["checksum"] != checksum(payload):
            raise NgfError(f"cannot resume: {path} is damaged (its contents do not match its checksum); "
                           "start the run afresh with --overwrite")
        identify.check(Path(out), json.loads(payload.get("identity") or "null"), identity)
        state, epoch, history = _restore(payload, template)
        if not isinstance(history, list) or not 0 <= epoch <= len(history):
            raise ValueError(f"it holds {epoch} epochs but a history of {len(history)}")
        history = history[:epoch]  # an older checkpoint has no wall time: its epochs' at least
        seconds = float(payload.get("wall_seconds", sum(r.get("seconds", 0.0) for r in history)))
    except NgfError:
        raise
    except Exception as exc:  # msgpack's own errors, a wrong structure, bad JSON in the history
        raise unreadable(path, exc) from None
    return state, history, seconds


def unreadable(path: Path, exc: Exception) -> NgfError:
    """The one-line error for a checkpoint file that cannot be read, naming it and why."""
    message = " ".join(str(exc).split())[:200] or type(exc).__name__
    return NgfError(f"cannot resume: {path} is not a readable checkpoint ({message})")


def check_readable(out: Path) -> None:
    """Raise ``NgfError`` if ``out`` holds a checkpoint that is not flax msgpack of ngf's layout."""
    path = Path(out) / CHECKPOINT
    if not path.is_file():
        return
    try:
        payload = serialization.msgpack_restore(path.read_bytes())
        if not isinstance(payload, dict) or not {"epoch", "history", "leaves"} <= set(payload):
            raise ValueError("not an ngf checkpoint")
    except Exception as exc:
        raise unreadable(path, exc) from None


def stored_history(out: Path | None) -> list:
    """The history in ``out``'s checkpoint, read without a template ([] if there is none or it is unreadable)."""
    path = Path(out) / CHECKPOINT if out is not None else None
    if path is None or not path.is_file():
        return []
    try:
        payload = serialization.msgpack_restore(path.read_bytes())
        return json.loads(payload["history"])[:int(payload["epoch"])]
    except Exception:  # a damaged checkpoint: resuming will say so
        return []


def start(out: Path | None, state, resume: bool, writer: bool = True,
          identity: dict | None = None) -> tuple[object, list, float]:
    """The state, history and wall seconds so far a run starts from: fresh, or restored from ``out``.

    A fresh run leaves the folder alone (an overwritten run's files go when the new run
    claims the folder, ``ngf.runs.folder``); a resumed one rewrites ``metrics.jsonl`` to
    the epochs the checkpoint holds (a kill may have left a later line behind). A run
    killed before its first checkpoint resumes from the start. A restored checkpoint must be whole
    and record the run ``identity`` (``ngf.runs.identity``). Only a ``writer`` (process 0
    of a multi-process run) rewrites anything.
    """
    if out is None:
        if resume:
            raise NgfError("--resume needs the run's folder")
        return state, [], 0.0
    if not resume:
        return state, [], 0.0
    history, seconds = [], 0.0
    if (Path(out) / CHECKPOINT).is_file() or not (Path(out) / CONFIG_FILE).is_file():
        state, history, seconds = _load(out, state, identity)
    if writer:
        write_metrics(out, history)
    return state, history, seconds
