"""What a run's checkpoint says about the run that wrote it, checked when the run resumes.

A checkpoint holds the run's identity: a fingerprint of its configuration (every option
of its ``ngf.runs.spec`` a resume must keep: not ``epochs`` nor where files and logs go)
and one of the data it trained on (the bytes of every split, whatever source they came
from: a folder, the Hub or the Python API). A resume whose ``config.toml`` was edited,
whose checkpoint was copied from another run, or whose dataset now resolves to other
files is refused in one line instead of continuing another run under this one's name.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ngf.core.errors import NgfError
from ngf.runs.fields import FIELDS_WITH


#: options the built-in models gained while the fingerprint left out none: at these values it leaves them out,
#: so a checkpoint written then still resumes. This list never grows: an option a rule or model gains from
#: now on is left out of the fingerprint a resume checks when the resumed ``config.toml`` lacks it and it
#: is at its default (``of_run``), the rule its comparison follows (``ngf.runs.spec``).
LEFT_OUT_AT = {("mlp", "bias"): True, ("mlp", "dropout"): 0.0, ("cnn", "bias"): True, ("cnn", "dropout"): 0.0,
               ("resnet", "bias"): True}


def left_out(config, label: str, value) -> bool:
    """Whether the fingerprint leaves out the option ``label`` (``"model option bias"``) at ``value``."""
    kind, _, key = label.partition(" option ")
    default = LEFT_OUT_AT.get((getattr(config, kind, None), key), ...) if key else ...
    return value == default and isinstance(value, bool) == isinstance(default, bool)


def _predates(spec, stored: dict | None, label: str, value) -> bool:
    """Whether ``stored`` lacks the option ``label``, which is at its factory's default."""
    kind, _, key = label.partition(" option ")
    if stored is None or not key:
        return False
    table = f"{kind}_opts"
    return key not in stored.get(table, {}) and key in spec.defaults[table] and value == spec.defaults[table][key]


def of_run(spec, splits, dataset: str, stored: dict | None = None) -> tuple[dict, dict]:
    """The identity a run's checkpoints record, and the one the checkpoint it resumes from must hold.

    Both fingerprint the run's data and the options of its ``RunSpec`` a resume must keep,
    less those ``LEFT_OUT_AT`` names at their values; the second also leaves out the rule's
    and model's options at their defaults that the resumed ``config.toml`` (``stored``) lacks:
    its run was written before they existed.
    """
    found = spec.labelled(FIELDS_WITH["may_differ_on_resume"])
    kept = {label: value for label, value in found.items() if not left_out(spec.config, label, value)}
    resumed = {label: value for label, value in kept.items() if not _predates(spec, stored, label, value)}
    identity = {"config": config_fingerprint(kept), "data": data_fingerprint(splits), "dataset": dataset}
    return identity, {**identity, "config": config_fingerprint(resumed)}


def config_fingerprint(comparable: dict) -> str:
    """A digest of the options a resume must keep, by label (``RunSpec.labelled``)."""
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
