"""Will the model fit? Its parameters' memory, from shapes alone, before anything is allocated.

``--model-opt widths=1000000000`` would otherwise ask XLA for terabytes and end in a
75-line RESOURCE_EXHAUSTED traceback. ``nnx.eval_shape`` builds the model abstractly
(shapes and dtypes, no arrays), and a model whose training state cannot fit in the
memory there is (the machine's, or the device's where JAX reports it) is refused on
one line.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import jax
from flax import nnx

from ngf.core.errors import NgfError

COPIES = 3  # parameters, their updates and at least one optimiser moment live at once (Adam keeps two)


def parameter_bytes(abstract) -> tuple[int, int]:
    """(count, bytes) of the arrays of an abstract model (``nnx.eval_shape``'s result)."""
    leaves = [leaf for leaf in jax.tree.leaves(nnx.state(abstract)) if hasattr(leaf, "shape")]
    count = sum(math.prod(leaf.shape) for leaf in leaves)
    return count, sum(math.prod(leaf.shape) * leaf.dtype.itemsize for leaf in leaves)


def available_bytes() -> tuple[int | None, str]:
    """The memory a run can use and where: the device's limit where JAX reports one, else the machine's."""
    try:
        stats = jax.local_devices()[0].memory_stats() or {}
    except Exception:  # noqa: BLE001 - a backend without memory statistics
        stats = {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"]), f"of {jax.local_devices()[0].device_kind} memory"
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "of memory on this machine"
    except (ValueError, OSError, AttributeError):  # not a POSIX system
        return None, ""


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.3g} {unit}"
        n /= 1000


def check_memory(make: Callable[[nnx.Rngs], object], seed: int, name: str) -> None:
    """Build ``make(rngs)`` abstractly and refuse a model too large to train here.

    ``NgfError`` from the factory (a bad option) propagates; any other failure is left for
    the real build to report.
    """
    try:
        abstract = nnx.eval_shape(lambda: make(nnx.Rngs(seed)))
        count, size = parameter_bytes(abstract)
    except NgfError:
        raise
    except (Exception, SystemExit):  # noqa: BLE001 - e.g. a factory that needs concrete arrays
        return
    limit, where = available_bytes()
    if limit is not None and COPIES * size > limit:
        raise NgfError(f"model {name!r} has {count:,} parameters ({_size(size)}); training holds at least "
                       f"{COPIES} copies of them ({_size(COPIES * size)}), more than the {_size(limit)} {where}")
