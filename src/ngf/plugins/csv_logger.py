"""The built-in CSV logger: one row per epoch in ``--log-csv PATH`` (``RunConfig.log_csv``).

It keeps no state between hooks, so concurrent runs in one process do not mix: the
run's start empties the file, each epoch appends a row (the header goes first). A
resumed run starts the file again from the epochs its checkpoint holds (``info["history"]``)
and appends the rest, so the file ends with every epoch once, as ``metrics.jsonl`` does,
even when a kill came between a checkpoint and its row.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ngf.host.hookspecs import hookimpl


def _path(config) -> Path | None:
    target = getattr(config, "log_csv", None)
    return Path(target) if target else None


@hookimpl
def ngf_run_start(config, info):
    """Create the CSV file: empty, or holding the rows of the epochs a resumed run already has."""
    path = _path(config)
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    done = list(info.get("history") or []) if getattr(config, "resume", False) else []
    with open(path, "w", newline="") as handle:
        if done:
            writer = csv.DictWriter(handle, fieldnames=list(done[0]), extrasaction="ignore")
            writer.writeheader()
            writer.writerows(done)


@hookimpl
def ngf_epoch_end(config, record):
    """Append the epoch's metrics as one row, after the header if the file is empty."""
    path = _path(config)
    if path is None:
        return
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(record), extrasaction="ignore")
        if handle.tell() == 0:
            writer.writeheader()
        writer.writerow(record)
