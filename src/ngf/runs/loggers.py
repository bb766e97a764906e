"""``--log NAME[:ARG]``: the built-in loggers' names, the library each needs, and the checks
made before a run starts (the loggers themselves are plugins: ``ngf.plugins.*_logger``).

A logger whose library is missing is refused here, before anything is loaded or
trained, with the extra that installs it; a logger that fails during the run is
reported once and the run goes on (``ngf.runs.callbacks``).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from typing import NamedTuple

from ngf.core.errors import NgfError, unknown_name


class Logger(NamedTuple):
    """A built-in logger: the module it imports, and what its ARG is."""

    module: str
    arg: str


LOGGERS = {
    "tensorboard": Logger("tensorboard", "DIR: the log folder (default: the run folder's tb/)"),
    "wandb": Logger("wandb", "PROJECT: the W&B project (default: ngf)"),
    "mlflow": Logger("mlflow", "TRACKING_URI: the store (default: sqlite:///…/mlflow.db in the run or "
                               "experiment folder; $NGF_MLFLOW_STORE=file: a mlruns/ file store there)"),
}
MLFLOW_STORE_ENV = "NGF_MLFLOW_STORE"  # the default MLflow store: sqlite (MLflow's advice) or file (mlruns/)
MLFLOW_STORES = ("sqlite", "file")
SQL_MODULES = ("sqlalchemy", "alembic")  # what MLflow's SQL stores need besides mlflow-skinny


def install_hint(name: str) -> str:
    """How to install the library of logger ``name``."""
    return f"pip install 'ngf[{name}]'"


def parse_log(entries) -> list[tuple[str, str | None]]:
    """``["tensorboard", "mlflow:sqlite:///m.db"]`` → ``[("tensorboard", None), ("mlflow", "sqlite:///m.db")]``."""
    if isinstance(entries, str) or not isinstance(entries, (list, tuple)) or \
            not all(isinstance(entry, str) for entry in entries):
        raise NgfError(f"log must be a list of NAME[:ARG] strings, got {entries!r:.80}")
    parsed = []
    for entry in entries:
        name, sep, arg = entry.partition(":")
        name = name.strip()
        if name not in LOGGERS:
            raise unknown_name("logger", name, LOGGERS)
        if sep and not arg.strip():
            placeholder = LOGGERS[name].arg.split(":")[0]
            raise NgfError(f"--log {entry!r} has nothing after ':'; give {name}:{placeholder} or {name} alone")
        parsed.append((name, arg.strip() or None))
    return parsed


def log_args(config, name: str) -> list[str | None]:
    """The ARGs of every ``--log name[:ARG]`` of ``config`` (None for a bare ``--log name``)."""
    return [arg for logger, arg in parse_log(getattr(config, "log", ()) or ()) if logger == name]


def import_library(name: str):
    """The library of logger ``name``, imported; missing, an ``NgfError`` naming the extra."""
    module = LOGGERS[name].module
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise NgfError(f"--log {name} needs the {module} library ({exc}); {install_hint(name)}") from None


def mlflow_default_store() -> str:
    """The store ``--log mlflow`` opens without a TRACKING_URI: ``$NGF_MLFLOW_STORE``, else sqlite."""
    store = os.environ.get(MLFLOW_STORE_ENV, "").strip().lower() or MLFLOW_STORES[0]
    if store not in MLFLOW_STORES:
        raise NgfError(f"${MLFLOW_STORE_ENV} must be {' or '.join(MLFLOW_STORES)} (the store --log mlflow "
                       f"opens by default), got {os.environ[MLFLOW_STORE_ENV]!r}")
    return store


def _check_mlflow_store(arg: str | None) -> None:
    """A sqlite store (the default one) needs SQLAlchemy and Alembic, which mlflow-skinny lacks."""
    sql = mlflow_default_store() == "sqlite" if arg is None else arg.startswith("sqlite:")
    missing = [m for m in SQL_MODULES if importlib.util.find_spec(m) is None] if sql else []
    if missing:
        store = "default store (sqlite)" if arg is None else f"store {arg}"
        raise NgfError(f"--log mlflow's {store} needs {' and '.join(missing)}, which mlflow-skinny lacks; "
                       f"{install_hint('mlflow')}, or choose the file store: {MLFLOW_STORE_ENV}=file")


def check_log(config) -> None:
    """Refuse ``config.log`` entries no run could use: unknown names, missing libraries, no folder."""
    parsed = parse_log(config.log)
    if config.experiment is not None and (not isinstance(config.experiment, (str, os.PathLike))
                                          or not str(config.experiment).strip()):
        raise NgfError(f"experiment must be a path, got {config.experiment!r}")
    for name, arg in parsed:
        if importlib.util.find_spec(LOGGERS[name].module) is None:  # cheap: nothing is imported yet
            raise NgfError(f"--log {name} needs the {LOGGERS[name].module} library, which is not installed; "
                           f"{install_hint(name)}")
        if name == "mlflow":
            _check_mlflow_store(arg)
        if name == "tensorboard" and arg is None and config.out is None and config.experiment is None:
            raise NgfError("--log tensorboard writes to the run folder's tb/: pass --out DIR, or name the "
                           "log folder with --log tensorboard:DIR")
