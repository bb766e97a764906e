"""Experiments on Ray: each run of a compare or sweep as a Ray task that reserves its CPUs or GPUs.

``ngf compare ... --executor ray [--ray-address ADDRESS]`` hands every run that still
has to be trained to Ray (``pip install 'ngf[ray]'``). Each task rebuilds the plugin
registry in its worker from the same plugins, runs ``ngf.run`` on the run's folder
(which must lie on a path every node reaches), and returns the summary; finished runs
are read back and unfinished ones resumed exactly as with local execution, since the
decision is made beforehand from the folders (``ngf.experiments.runner.prepare``).
Without ``ADDRESS`` a local Ray instance is started with this machine's CPUs.

Each task reserves ``cpus_per_run`` CPUs (default 1) and ``gpus_per_run`` GPUs (default 0),
and its run computes with that many XLA threads (``threads``, recorded in its config,
``ngf.runs.threads``; a run that sets ``threads`` itself keeps it), so tasks on one
machine do not compete.

A task whose worker or node dies (killed, preempted, out of memory) is sent again, up to
``RETRIES`` times, and resumes from the last checkpoint its folder holds: an epoch is
checkpointed before it is recorded, so the retried run ends equal to an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
from pathlib import Path
from typing import Callable

from ngf.core.errors import NgfError

EXTRA = "pip install 'ngf[ray]'"
RETRIES = 3  # times a run whose task died is sent again


def _ray():
    """The ``ray`` module, or one line naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise NgfError(f"--executor ray needs Ray, which is not installed: {EXTRA}") from None
    return ray


def check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """Ray is installed and, for an ``ADDRESS`` of ``host:port`` (or ``ray://host:port``), something listens
    there: else one line, within ``timeout`` seconds, before any run starts (Ray's own client retries
    for minutes). No address, or ``auto``/``local``, is left to Ray."""
    _ray()
    if not address or address in ("auto", "local"):
        return
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        raise NgfError(f"--ray-address {address}: expected HOST:PORT (or ray://HOST:PORT, auto)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise NgfError(f"cannot reach Ray at {address}: {reason} (is a Ray cluster running there?)") from None


def _plugins(registry) -> tuple[list[str], list[str]]:
    """The ``--plugin`` modules and the blocked plugins of ``registry``, to rebuild it in a worker."""
    extra = [name for name, info in registry.plugins.items() if info.source == "--plugin"]
    blocked = [name for name, info in registry.plugins.items() if info.status == "blocked"]
    return extra, blocked


def _train(config, plugins: list[str], blocked: list[str], cpus: int = 1) -> dict:
    """In a Ray worker: one run, through the same plugins, with ``cpus`` XLA threads unless the
    config sets them; its summary (also when it diverged)."""
    from ngf.core.errors import Diverged
    from ngf.host.registry import load_registry
    from ngf.runs.api import run

    registry = load_registry(plugins, blocked)
    config = dataclasses.replace(config, threads=config.threads or max(1, int(cpus)))
    try:
        return run(config, registry=registry)
    except Diverged as exc:
        return {**exc.summary, "diverged_message": str(exc)}


def _worker_env() -> dict:
    """Environment of a task's worker: this process's import path, XLA flags and data path
    (the thread count is the run's ``threads``, set in ``_train``)."""
    return {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p), "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
            "NGF_DATA_DIR": os.environ.get("NGF_DATA_DIR", "")}


def run_on_ray(todo: list, registry, address: str | None = None, cpus_per_run: int = 1, gpus_per_run: float = 0,
               report: Callable[[str], None] = print) -> dict:
    """Train ``todo`` (``[(key, label, config)]``) as Ray tasks; ``{key: summary}``.

    A run that fails with an ``NgfError`` fails the experiment with that message, as it
    would locally; the other tasks are cancelled.
    """
    ray = _ray()
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": _worker_env()})
        except Exception as exc:  # noqa: BLE001 - ConnectionError, ValueError, RuntimeError...
            raise NgfError(f"cannot start or reach Ray{f' at {address}' if address else ''}: "
                           + " ".join(str(exc).split())[:200]) from None
    task = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=0)(_train)
    plugins, blocked = _plugins(registry)
    pending = {task.remote(config, plugins, blocked, cpus_per_run): (key, label, config, 0)
               for key, label, config in todo}
    done = {}
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            key, label, config, attempt = pending.pop(ready[0])
            result = _result(ray, ready[0], label, attempt)
            if result is None:  # the task died: again, from its folder's last checkpoint
                report(f"{label}: its Ray task died; sending it again ({attempt + 1} of {RETRIES})")
                again = retried(config)
                pending[task.remote(again, plugins, blocked, cpus_per_run)] = (key, label, again, attempt + 1)
                continue
            done[key] = result
            report(f"{label}: {result.get('diverged_message') or result['status']} (on Ray)")
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if started_here:
            ray.shutdown()
    return done


def retried(config):
    """The config of a run sent again after its task died: resume its checkpoint, or start afresh."""
    from ngf.runs.checkpoint import CHECKPOINT

    if (Path(config.out) / CHECKPOINT).is_file():
        return dataclasses.replace(config, resume=True, overwrite=False)
    return dataclasses.replace(config, resume=False, overwrite=True)


def _result(ray, ref, label: str, attempt: int) -> dict | None:
    """The summary a task returned; None when its worker died and it may be sent again;
    its ``NgfError`` (or a death past ``RETRIES``) as one line naming the run."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause if isinstance(getattr(exc, "cause", None), Exception) else exc
        raise NgfError(f"{label}: " + " ".join(str(cause).split())[:300]) from None
    except ray.exceptions.RayError as exc:  # WorkerCrashedError, NodeDiedError, OutOfMemoryError...
        if attempt < RETRIES:
            return None
        raise NgfError(f"{label}: its Ray task died {RETRIES + 1} times; last: "
                       + " ".join(str(exc).split())[:200]) from None
