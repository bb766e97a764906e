"""Layer modules. A layer's ``__call__`` is its map a_l; ``activation`` is its f_l."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from ngf.core.errors import NgfError, unknown_name
from ngf.core.network import check_dropout, identity
from ngf.models.conv import pooled


def hard_sigmoid(s: jax.Array) -> jax.Array:
    """ρ(s) = clip(s, 0, 1), the hard sigmoid of equilibrium propagation (Scellier & Bengio 2017).

    Its derivative is 1 on the closed interval [0, 1] and 0 outside, as Theano's ``clip`` in the
    authors' code (``jnp.clip`` would give ½ at 0 and 1, where units start and saturate).
    """
    return jnp.where((s >= 0) & (s <= 1), s, (s > 1).astype(s.dtype))


ACTIVATIONS = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "gelu": jax.nn.gelu,
    "elu": jax.nn.elu,
    "leaky_relu": jax.nn.leaky_relu,
    "softplus": jax.nn.softplus,
    "hard_sigmoid": hard_sigmoid,
    "identity": identity,
}


def activation_by_name(name: str):
    """Look an activation function up by name."""
    if name not in ACTIVATIONS:
        raise unknown_name("activation", name, ACTIVATIONS)
    return ACTIVATIONS[name]


def check_bias(owner: str, bias) -> bool:
    """``bias`` checked to be a bool: whether the model's unit-mixing layers carry a bias b."""
    if not isinstance(bias, bool):
        raise NgfError(f"{owner} option bias must be true or false, got {bias!r}")
    return bias


class Dense(nnx.Module):
    """A dense layer on the flattened input: h = W·flatten(pool(z)) + b, or without b when ``bias`` is false.

    ``pool`` (e.g. ``ngf.models.conv.MaxPool(2)``) pools image inputs first; None leaves them as they are.
    ``dropout`` is P, the probability that a training step drops each unit of the layer's output z
    (``Network.thinned``); 0 drops none.
    """

    def __init__(self, in_features: int, out_features: int, activation=identity, *,
                 pool: Callable | None = None, bias: bool = True, dropout: float = 0.0, rngs: nnx.Rngs):
        self.linear = nnx.Linear(in_features, out_features, use_bias=bias, rngs=rngs)
        self.activation = activation
        self.pool = pool
        self.dropout = check_dropout("Dense", dropout)

    def __call__(self, z: jax.Array) -> jax.Array:
        z = pooled(self.pool, z)
        return self.linear(z.reshape(z.shape[0], -1))


class Sequential(nnx.Module):
    """A stack of layers; ``model(x)`` applies each layer's map and activation in turn."""

    def __init__(self, layers):
        self.layers = nnx.List(layers)

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.layers:
            x = layer.activation(layer(x))
        return x
