"""How many CPU threads XLA computes with in this process: ``--threads K``, ``threads`` in ``config.toml``.

XLA's CPU client sizes its thread pool once, when JAX's backend starts, from the cores
the process may run on (its CPU affinity), and that size decides how a convolution or a
matrix product splits its work: the last bits of a result depend on it. With JAX 0.10.2,
LeNet-5 trained one epoch ends with a different test loss on one core than on two (the
mlp does not), while ``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false`` changes neither
the pool's size nor a single bit. So ``threads = K`` limits the process to K of its usable
cores (``os.sched_setaffinity``) while the backend starts, then gives every thread all the
cores back (``apply``); a run repeated with the same ``threads`` on the same machine gives
the same bits.

``None`` (the default) leaves the process as it is: XLA uses every usable core. This
module imports only the standard library (JAX only to start its backend), so the command
can apply it before JAX starts.
"""

from __future__ import annotations

import os
import sys

from ngf.core.errors import NgfError

_applied: list[int] = []  # the pool size ``apply`` started JAX with in this process, once it has


def usable_cores() -> list[int]:
    """The CPU cores this process may run on, in order."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def backend_started() -> bool:
    """Whether JAX's backend (and so XLA's thread pool) exists in this process already."""
    bridge = sys.modules.get("jax._src.xla_bridge")
    started = getattr(bridge, "backends_are_initialized", None)
    return bool(started and started())


def check(threads: int) -> list[int]:
    """The usable cores, once ``threads`` is found to be at most their number."""
    usable = usable_cores()
    if threads > len(usable):
        raise NgfError(f"--threads {threads} is more than the {len(usable)} cores this process may use "
                       f"(its CPU affinity); pass --threads {len(usable)} or fewer")
    return usable


def apply(threads: int | None) -> None:
    """Give XLA's thread pool in this process ``threads`` threads: start JAX's backend on that many
    of the usable cores, then let every thread of the process run on all of them again.

    The pool keeps the size it started with, whatever the affinity later (a LeNet-5 epoch
    ends with the one-thread bits), while the system is free to move the threads to idle
    cores: on a shared machine a process pinned to a busy core would wait for it. Nothing
    to do when ``threads`` is None or the process has exactly that many cores; otherwise
    the backend must not have started yet. Starting it reads ``$XLA_FLAGS`` once: set them
    before this call, since XLA ignores any change made afterwards.
    """
    if threads is None:
        return
    usable = check(threads)
    current = _applied[0] if _applied else len(usable)  # what the pool has, or would have
    if current == threads:
        return
    if _applied or backend_started():
        raise NgfError(f"--threads {threads}: JAX already computes with {current} threads in this process; "
                       "the thread count is set before JAX starts (ngf run --threads, or a new Python process)")
    if not hasattr(os, "sched_setaffinity"):
        raise NgfError(f"--threads {threads} needs CPU affinity (Linux); this system has none")
    os.sched_setaffinity(0, usable[:threads])
    try:
        import jax

        jax.devices()  # every backend starts now, XLA's CPU pool with ``threads`` threads
        _applied[:] = [threads]
    finally:
        _spread(usable)


def _spread(cores: list[int]) -> None:
    """Let every thread of this process run on any of ``cores``."""
    for name in os.listdir("/proc/self/task") if os.path.isdir("/proc/self/task") else [0]:
        try:
            os.sched_setaffinity(int(name), cores)
        except OSError:  # a thread that ended meanwhile
            pass
