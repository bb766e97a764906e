"""The built-in Weights & Biases logger: ``--log wandb[:PROJECT]`` (extra ``ngf[wandb]``).

Offline unless W&B is configured (``WANDB_MODE`` or ``WANDB_API_KEY`` set): an
offline run is written under the run folder (``ngf compare`` / ``ngf sweep``: the
experiment folder) as ``wandb/offline-run-*/``, and ``wandb sync`` uploads it later;
no network call is made. The run's name says what it is, its group is the experiment,
its config the run's configuration; each epoch's numbers are logged at step = epoch,
the summary and status go to the run's summary, and the run finishes with exit code 0
(completed) or 1 (diverged, interrupted, failed). PROJECT defaults to
``$WANDB_PROJECT``, else ``ngf``.
"""

from __future__ import annotations

import os

from ngf.plugins.logger_base import RunLogger, final

DEFAULT_PROJECT = "ngf"


def configured() -> bool:
    """Whether the user has set W&B up (then its own mode applies; otherwise ngf logs offline)."""
    return bool(os.environ.get("WANDB_MODE") or os.environ.get("WANDB_API_KEY"))


class WandbLogger(RunLogger):
    """``--log wandb[:PROJECT]``."""

    name = "wandb"

    def start(self, library, arg, run, config, info):
        """``wandb.init`` a new run named after this one, in its group."""
        folder = run.experiment or run.out
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        return library.init(
            project=arg or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT, name=run.name, group=run.group,
            config={**config, "steps_per_epoch": info.get("steps_per_epoch"), "device": info.get("device")},
            tags=[f"{k}:{v}" for k, v in run.tags.items()], dir=str(folder) if folder is not None else None,
            mode=None if configured() else "offline", reinit="create_new",
            settings=library.Settings(console="off", silent=True))

    def epoch(self, handle, epoch, scalars):
        """The epoch's numbers at step = epoch."""
        handle.log({**scalars, "epoch": epoch}, step=epoch)

    def end(self, handle, summary, config_file):
        """Status and final numbers into the run's summary; finish it."""
        handle.summary.update(final(summary))
        handle.finish(exit_code=0 if summary.get("status") == "completed" else 1)

    def close(self, handle, status):
        """Record the status and finish the run with exit code 1."""
        handle.summary.update({"status": status})
        handle.finish(exit_code=1)


PLUGIN = WandbLogger()  # what ngf registers: its methods are the hooks
