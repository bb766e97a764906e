"""Shared pieces of feedback-based rules: random feedback weights and the backward walk over the graph."""

from __future__ import annotations

import math
from typing import Callable

import jax

from ngf.core.errors import NgfError
from ngf.core.network import INPUT, Network

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


def check_distribution(dist: str, option: str | None = None) -> str:
    """Validate a feedback-weight distribution name; ``option`` (``"dfa option dist"``) starts the message."""
    if dist not in DISTRIBUTIONS:
        where = f"{option}: " if option else ""
        raise NgfError(f"{where}unknown distribution {dist!r}; valid distributions: {', '.join(DISTRIBUTIONS)}")
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
    """One random feedback pytree per node l ≥ 2 (index 0, the first node, gets None).

    A node without parameters (a sum) gets an empty pytree: its J^T needs no weights.
    """
    keys = jax.random.split(key, len(params))
    return (None,) + tuple(random_like(k, p, scale, dist) for k, p in zip(keys[1:], params[1:]))


def receive_change(theta, change, decay: float, gain: float = 1.0, matrices_only: bool = False):
    """θ + gain·ΔW − λθ, leaf by leaf: a weight receiving an applied change ΔW, and decaying.

    Kolen–Pollack's W and B (gain 1) and LRA-E's E (gain γ), docs/rules.md#kp and #lra.
    ``matrices_only``: only leaves of two or more axes (weight matrices, kernels) decay;
    vectors (biases) take θ + gain·ΔW alone.
    """
    def receive(t, d):
        lam = 0.0 if matrices_only and t.ndim < 2 else decay
        return t + gain * d - lam * t  # θ ← θ + γΔW − λθ
    return jax.tree.map(receive, theta, change)


def walk_down(net: Network, top_delta: jax.Array, send: Callable, signal: Callable) -> tuple:
    """The backward walk over the graph of nodes, in reverse topological order (docs/rules.md#graph).

    δ^L = ``top_delta``. Each node c sends ``send(c, δ^c)`` (J_c^T with some weights, the
    same to every parent, as u^c is their sum) to its parents; the signal arriving at a
    node's output is the sum of what its consumers sent, and ``signal(l, arriving)``
    turns it into δ^l. Nothing is sent to the input x. Returns every node's δ.
    """
    deltas, arriving = [None] * net.depth, [None] * net.depth
    for c in range(net.depth - 1, -1, -1):
        deltas[c] = top_delta if c == net.depth - 1 else signal(c, arriving[c])
        parents = [k for k in net.parents(c) if k != INPUT]
        if parents:
            sent = send(c, deltas[c])
            for k in parents:  # where a node feeds several consumers, their signals add
                arriving[k] = sent if arriving[k] is None else arriving[k] + sent
    return tuple(deltas)


def propagate_errors(net: Network, weights, trace, top_delta: jax.Array) -> tuple:
    """Walk δ down the graph: δ^k = f'(h^k) ⊙ Σ_{c reads k} J_c^T(W_c, δ^c).

    With W = the forward parameters this is backprop; with fixed random W it is
    feedback alignment (docs/rules.md#fa). In a chain, δ^{l-1} = f'(h^{l-1}) ⊙ J_l^T(W_l, δ^l).
    """
    return walk_down(
        net, top_delta,
        lambda c, delta: net.input_vjp(c, weights[c], trace[c].inputs, delta),  # J_c^T(W_c, δ^c)
        lambda l, back: net.activation_vjp(l, trace[l].pre, back))  # f'(h^l) ⊙ (…)
