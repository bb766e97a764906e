"""A test plugin that kills its own process once per run, after the run's first epoch.

Load it with ``--plugin ngf_ray_killer`` on a Ray comparison: each run's Ray worker
dies (SIGKILL, as a preempted node would) right after epoch 1 was checkpointed and
recorded, the first time only (a file beside the run's folder remembers it), so the
executor must send the run again and resume it. Each start appends the number of
epochs it began with to ``<out>.starts``: ``0`` then ``1`` for a run resumed after the kill.
"""

import os
import signal
from pathlib import Path

from ngf.host.hookspecs import hookimpl


@hookimpl
def ngf_run_start(config, info):
    """Remember how many epochs this start of the run already held."""
    with open(str(config.out) + ".starts", "a") as starts:
        starts.write(f"{len(info['history'])}\n")


@hookimpl
def ngf_epoch_end(config, epoch, record):
    """After epoch 1 of a run not yet killed: mark it, then SIGKILL this process."""
    marker = Path(str(config.out) + ".killed")
    if epoch == 1 and not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
