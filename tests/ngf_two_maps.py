"""A plugin model whose middle layer holds two dense maps: refused unless declared atomic (issue 13)."""

import math

import jax
from flax import nnx

from ngf.host.hookspecs import hookimpl
from ngf.models import Dense, Sequential


class TwoMaps(nnx.Module):
    """Two dense maps in one layer: h = W₂·tanh(W₁·z)."""

    def __init__(self, width: int, *, atomic: bool, rngs: nnx.Rngs):
        self.first, self.second = nnx.Linear(width, width, rngs=rngs), nnx.Linear(width, width, rngs=rngs)
        self.activation = jax.numpy.tanh
        self.atomic = atomic

    def __call__(self, z):
        return self.second(jax.numpy.tanh(self.first(z)))


def two_maps(input_shape, n_classes, *, rngs, width: int = 8, atomic: bool = False):
    """Dense, a two-map layer, dense.

    Args:
      width: hidden units.
      atomic: declare the two-map layer atomic (trained by backprop inside).
    """
    return Sequential([Dense(math.prod(input_shape), width, jax.numpy.tanh, rngs=rngs),
                       TwoMaps(width, atomic=atomic, rngs=rngs), Dense(width, n_classes, rngs=rngs)])


@hookimpl
def ngf_register_models():
    """Register ``two-maps`` (refused) and ``two-maps-atomic`` (its middle layer declared atomic)."""
    return {"two-maps": two_maps, "two-maps-atomic": lambda *args, **kwargs: two_maps(*args, atomic=True, **kwargs)}
