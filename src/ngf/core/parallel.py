"""Data parallelism with ``jax.sharding``: the batch split across devices, all else replicated.

The step itself is unchanged: inputs of each step carry a sharding constraint on
their batch axis and XLA's SPMD partitioner splits the per-example work and turns
the batch means of the updates into all-reduces. Parameters, optimiser and rule
state, and the dataset are replicated on every device. Across hosts the same code
runs after ``jax.distributed.initialize()`` (docs/scaling.md): ``jax.devices()`` then
lists every host's devices and the mesh spans them all.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ngf.core.errors import NgfError

AXIS = "data"


def device_count(requested: int | None) -> int:
    """How many devices to use: ``requested`` (checked) or all of them."""
    available = jax.device_count()
    if requested is None:
        return available
    if requested < 1 or requested > available:
        raise NgfError(f"--devices must be between 1 and {available} (the devices JAX sees), got {requested}")
    return requested


@dataclasses.dataclass(frozen=True, eq=False)
class DataParallel:
    """A one-axis mesh over ``n`` devices and the shardings a run needs."""

    mesh: Mesh

    @classmethod
    def over(cls, n: int) -> "DataParallel":
        """A mesh over the first ``n`` devices."""
        return cls(Mesh(np.array(jax.devices()[:n]), (AXIS,)))

    @property
    def size(self) -> int:
        """Number of devices."""
        return self.mesh.size

    def check_batch(self, batch_size: int) -> None:
        """The batch must split evenly across the devices."""
        if batch_size % self.size:
            raise NgfError(f"batch-size {batch_size} does not split evenly across {self.size} devices")

    def replicate(self, tree):
        """Place every array of ``tree`` whole on every device.

        Across processes each host hands its full copy over as a NumPy array; a typed PRNG key
        (the engine's step key, a rule's own) has no NumPy form, so it travels as its raw key
        data and is wrapped again.
        """
        sharding = NamedSharding(self.mesh, PartitionSpec())
        if jax.process_count() == 1:
            return jax.device_put(tree, sharding)

        def place(a):  # each host holds the same full copy
            if not is_key(a):
                return jax.make_array_from_process_local_data(sharding, np.asarray(a))
            data = jax.make_array_from_process_local_data(sharding, np.asarray(jax.random.key_data(a)))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(a))

        return jax.tree.map(place, tree)

    def split_batch(self, x: jax.Array) -> jax.Array:
        """Inside a jitted step: shard ``x`` along its batch axis."""
        spec = PartitionSpec(AXIS, *([None] * (x.ndim - 1)))
        return jax.lax.with_sharding_constraint(x, NamedSharding(self.mesh, spec))


def is_key(leaf) -> bool:
    """Whether ``leaf`` is a typed PRNG key array (``jax.random.key``)."""
    return isinstance(leaf, jax.Array) and jax.numpy.issubdtype(leaf.dtype, jax.dtypes.prng_key)
