"""The built-in CSV logger: one row per epoch in ``--log-csv PATH`` (``RunConfig.log_csv``).

It keeps no state between hooks, so concurrent runs in one process do not mix: the
run's start empties the file, each epoch appends a row (the header goes first).
"""

from __future__ import annotations

import csv
from pathlib import Path

from ngf.host.hookspecs import hookimpl


def _path(config) -> Path | None:
    target = getattr(config, "log_csv", None)
    return Path(target) if target else None


@hookimpl
def ngf_run_start(config):
    """Create (or empty) the CSV file."""
    path = _path(config)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")


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
