"""Shared pieces of feedback-based rules: random feedback weights and the backward walk."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ngf.core.errors import NgfError
from ngf.core.network import Network

DISTRIBUTIONS = ("normal", "uniform")


def glorot_std(shape: tuple) -> float:
    """Glorot's standard deviation sqrt(2 / (fan_in + fan_out)) for a parameter shape.

    The last axis is fan-out, the one before it fan-in, and any leading axes (a
    convolution's window) multiply both; vectors use their length for both.
    """
    if len(shape) < 2:
        fan = shape[0] if shape else 1
        return math.sqrt(1.0 / fan)
    receptive = math.prod(shape[:-2])
    fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
    return math.sqrt(2.0 / (fan_in + fan_out))


def check_distribution(dist: str) -> str:
    """Validate a feedback-weight distribution name."""
    if dist not in DISTRIBUTIONS:
        raise NgfError(f"unknown distribution {dist!r}; valid distributions: {', '.join(DISTRIBUTIONS)}")
    return dist


def random_like(key: jax.Array, tree, scale: float = 1.0, dist: str = "normal"):
    """Random arrays shaped like ``tree``: ``scale`` × Glorot std, normal or uniform."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, max(len(leaves), 1))
    out = []
    for k, leaf in zip(keys, leaves):
        std = scale * glorot_std(leaf.shape)
        if dist == "normal":
            out.append(std * jax.random.normal(k, leaf.shape, leaf.dtype))
        else:  # uniform with the same standard deviation
            bound = std * math.sqrt(3.0)
            out.append(jax.random.uniform(k, leaf.shape, leaf.dtype, -bound, bound))
    return jax.tree.unflatten(treedef, out)


def layer_feedback(key: jax.Array, params, scale: float, dist: str) -> tuple:
    """One random feedback pytree per layer l ≥ 2 (index 0, the first layer, gets None)."""
    keys = jax.random.split(key, len(params))
    return (None,) + tuple(random_like(k, p, scale, dist) for k, p in zip(keys[1:], params[1:]))


def propagate_errors(net: Network, weights, trace, top_delta: jax.Array) -> tuple:
    """Walk δ down the network: δ^{l-1} = f'(h^{l-1}) ⊙ J_l^T(W_l, δ^l).

    With W = the forward parameters this is backprop; with fixed random W it is
    feedback alignment (DESIGN.md §3).
    """
    deltas = [top_delta]
    for l in range(net.depth - 1, 0, -1):
        back = net.input_vjp(l, weights[l], trace[l].inputs, deltas[-1])
        deltas.append(net.activation_vjp(l - 1, trace[l - 1].pre, back))
    return tuple(reversed(deltas))
