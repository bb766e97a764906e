"""How many CPU threads XLA computes with in this process: ``--threads K``, ``threads`` in ``config.toml``.

XLA's CPU client sizes its thread pool once, when JAX's backend starts, from the cores
the process may run on (its CPU affinity), and that size decides how a convolution or a
matrix product splits its work: the last bits of a result depend on it. With JAX 0.10.2,
LeNet-5 trained one epoch ends with a different test loss on one core than on two (the
mlp does not), while ``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false`` changes neither
the pool's size nor a single bit. So ``threads = K`` limits the process to K of its usable
cores (``os.sched_setaffinity``) before the backend starts; a run repeated with the same
``threads`` on the same machine gives the same bits.

``None`` (the default) leaves the process as it is: XLA uses every usable core. This
module imports only the standard library, so the command can apply it before JAX starts.
"""

from __future__ import annotations

import os
import sys

from ngf.core.errors import NgfError


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


def apply(threads: int | None, cores: list[int] | None = None) -> None:
    """Hold XLA in this process to ``threads`` cores (the first of ``cores``, by default the usable ones).

    Nothing to do when ``threads`` is None or the process has exactly that many cores.
    Otherwise the backend must not have started yet: its pool keeps the size it started with.
    """
    if threads is None:
        return
    usable = check(threads)
    if len(usable) == threads and cores is None:
        return
    if backend_started():
        raise NgfError(f"--threads {threads}: JAX already computes with {len(usable)} threads in this process; "
                       "the thread count is set before JAX starts (ngf run --threads, or a new Python process)")
    if not hasattr(os, "sched_setaffinity"):
        raise NgfError(f"--threads {threads} needs CPU affinity (Linux); this system has none")
    os.sched_setaffinity(0, (cores or usable)[:threads])
