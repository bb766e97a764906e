"""The built-in MLflow logger: ``--log mlflow[:TRACKING_URI]`` (extra ``ngf[mlflow]``).

TRACKING_URI defaults to MLflow's recommended local store, ``sqlite:///DIR/mlflow.db``,
with the artifacts in ``DIR/mlartifacts/`` (DIR: the run folder; ``ngf compare`` /
``ngf sweep``: the experiment folder; no ``--out``: the current folder), so MLflow's
own client and UI open it as they are. ``NGF_MLFLOW_STORE=file`` chooses MLflow's file
store, ``DIR/mlruns/``, instead; MLflow 3 reads one only with
``MLFLOW_ALLOW_FILE_STORE=true``, which the logger sets while it opens it (a reader
must set it too). A folder as TRACKING_URI is a file store there; any other URI
(``sqlite:///other.db``, ``http://host:5000``) is MLflow's to open. The experiment is the
compare/sweep folder's name (``ngf`` for a single run). Each run logs its configuration
as parameters (``rule_opts.beta``...) and as ``config.json``, rule, model, dataset,
seed and variant as ``ngf.*`` tags, each epoch's numbers at step = epoch, and at the
end ``ngf-summary.json``, ``config.toml``, the final numbers, the ``ngf.status`` tag
and the run's status (FINISHED, FAILED, or KILLED when interrupted). Only
``MlflowClient`` is used, never MLflow's global active run, so runs in one process do
not mix; the processes of ``--workers`` open one sqlite store in turn (a lock on the file).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from pathlib import Path

from ngf.plugins.logger_base import RunLogger, final, flat
from ngf.runs.loggers import mlflow_default_store

DEFAULT_EXPERIMENT = "ngf"
MAX_BATCH = 100  # MLflow's log_batch takes at most 100 parameters at a time
DATABASE, ARTIFACTS = "mlflow.db", "mlartifacts"  # the default store in the run or experiment folder
QUIET_LOGGERS = ("mlflow.store.db.utils", "alembic")  # "Creating initial MLflow database tables..."
END_STATES = {"completed": "FINISHED", "interrupted": "KILLED"}  # anything else: FAILED


@contextlib.contextmanager
def _file_store_allowed():
    """MLflow 3 opens a file store only with MLFLOW_ALLOW_FILE_STORE=true; set it while the client opens one."""
    before = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)
        else:
            os.environ["MLFLOW_ALLOW_FILE_STORE"] = before


def tracking_uri(arg: str | None, run) -> str:
    """The store: ``arg`` (a folder becomes a file store), else ``mlflow.db`` (sqlite) or, with
    ``NGF_MLFLOW_STORE=file``, ``mlruns/`` in the experiment or run folder."""
    if arg and "://" in arg:
        return arg
    if arg:
        return Path(arg).resolve().as_uri()
    folder = (run.experiment or run.out or Path.cwd()).resolve()
    if mlflow_default_store() == "file":
        return (folder / "mlruns").as_uri()
    return f"sqlite:///{folder / DATABASE}"


@contextlib.contextmanager
def _opening(uri: str):
    """While the client opens the store: the file store allowed; a sqlite file locked (two processes
    creating its tables, or one experiment, at once would collide) and MLflow's set-up lines kept quiet."""
    if uri.startswith("file:"):
        with _file_store_allowed():
            yield None
        return
    if not uri.startswith("sqlite:///"):
        yield None
        return
    database = Path(uri[len("sqlite:///"):])
    quiet = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [logger.level for logger in quiet]
    with open(database, "ab") as handle:  # an empty file is a new sqlite database
        fcntl.flock(handle, fcntl.LOCK_EX)
        for logger in quiet:
            logger.setLevel(logging.WARNING)
        try:
            yield database.parent / ARTIFACTS
        finally:
            for logger, level in zip(quiet, levels):
                logger.setLevel(level)


def _experiment(client, name: str, artifacts: Path | None) -> str:
    """The id of experiment ``name``, created (its artifacts in ``artifacts``, when given) if new."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = artifacts.as_uri() if artifacts is not None else None
    return client.create_experiment(name, artifact_location=location)


class MlflowRun:
    """A client on one store and the id of the run this logger opened there."""

    def __init__(self, client, run_id: str):
        self.client, self.run_id = client, run_id


class MlflowLogger(RunLogger):
    """``--log mlflow[:TRACKING_URI]``."""

    name = "mlflow"

    def start(self, library, arg, run, config, info):
        """Create the run in the experiment (created if new) and log the configuration."""
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        uri = tracking_uri(arg, run)
        with _opening(uri) as artifacts:
            client = MlflowClient(tracking_uri=uri)
            experiment_id = _experiment(client, run.group or DEFAULT_EXPERIMENT, artifacts)
        tags = {f"ngf.{k}": v for k, v in run.tags.items()}
        opened = client.create_run(experiment_id, run_name=run.name, tags=tags)
        handle = MlflowRun(client, opened.info.run_id)
        params = [Param(k, str(v)[:6000]) for k, v in flat(config).items() if v is not None]
        for i in range(0, len(params), MAX_BATCH):
            client.log_batch(handle.run_id, params=params[i:i + MAX_BATCH])
        client.log_dict(handle.run_id, config, "config.json")
        return handle

    def epoch(self, handle, epoch, scalars):
        """The epoch's numbers at step = epoch, in one batch."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        handle.client.log_batch(handle.run_id, metrics=[Metric(k, v, now, epoch) for k, v in scalars.items()])

    def end(self, handle, summary, config_file):
        """Summary, config file, final numbers and status; the run ends FINISHED or FAILED."""
        client, run_id = handle.client, handle.run_id
        # not "summary.json": `ngf plot DIR` takes a folder holding one for a run folder
        client.log_dict(run_id, {k: v for k, v in summary.items() if k != "history"}, "ngf-summary.json")
        if config_file is not None:
            client.log_artifact(run_id, str(config_file))
        numbers = {f"final_{k}": float(v) for k, v in final(summary).items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        for key, value in numbers.items():
            client.log_metric(run_id, key, value)
        self.close(handle, summary.get("status", "completed"))

    def close(self, handle, status):
        """Tag the status and end the run in MLflow's terms."""
        handle.client.set_tag(handle.run_id, "ngf.status", status)
        handle.client.set_terminated(handle.run_id, status=END_STATES.get(status, "FAILED"))


PLUGIN = MlflowLogger()  # what ngf registers: its methods are the hooks
