"""Sign-symmetric feedback: feedback weights that share only the forward weights' signs.

Liao, Leibo & Poggio 2016 ("How important is weight symmetry in backpropagation?")
and Moskovitz, Litwin-Kumar & Abbott 2018 ("Feedback alignment in deep convolutional
networks"). The error walks down the network as in backprop,
δ^{l-1} = f'(h^{l-1}) ⊙ J_l^T(B_l, δ^l), with B_l = sign(θ_l) ⊙ M_l:

- ``usf``:  M_l a constant (uniform sign-concordant feedback);
- ``brsf``: M_l = |R_l|, R_l random, redrawn at every step (batchwise random magnitudes);
- ``frsf``: M_l = |R_l|, R_l random, drawn once (fixed random magnitudes).

Only ``ngf``'s public API is used. B_l replaces every parameter of node l inside the
node's own map, so the rules work for any node type, and on any graph of nodes (a
residual network's convolutions each use their own signs), through
``ngf.propagate_errors``. Not local by definition: each node's feedback reads the signs
of the forward weights of the nodes above it.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

import ngf


def sign_concordant(params, magnitudes) -> tuple:
    """B_l = sign(θ_l) ⊙ M_l for nodes l ≥ 2 (``magnitudes`` holds M_2..M_L).

    The first node sends no error further down, so it gets no feedback (None); a node
    without weights (a sum) gets an empty pytree.
    """
    feedback = [jax.tree.map(lambda w, m: jnp.sign(w) * m, theta, m)
                for theta, m in zip(params[1:], magnitudes)]
    return (None, *feedback)


def random_magnitudes(key: jax.Array, params, scale: float, dist: str) -> tuple:
    """|R_l| for nodes l ≥ 2, R_l drawn by ``ngf.random_like`` (scale × Glorot std)."""
    return jax.tree.map(jnp.abs, ngf.random_like(key, tuple(params[1:]), scale, dist))


def _sign_rule(init, magnitudes) -> ngf.LearningRule:
    """A rule whose feedback is sign(θ) ⊙ ``magnitudes(params, state)``."""

    def compute_targets(net, params, trace, labels, state):
        m, state = magnitudes(params, state)
        e = net.loss.error(trace[-1].pre, labels)  # δ^L = e
        return ngf.propagate_errors(net, sign_concordant(params, m), trace, e), state

    # B = sign(θ) ⊙ M: zero forward weights would give zero feedback, so --init zeros is refused
    return ngf.LearningRule(init, compute_targets, needs_nonzero_weights=True)


def usf(scale: float = 1.0) -> ngf.LearningRule:
    """Uniform sign-concordant feedback: B_l = scale · σ_l · sign(θ_l).

    Args:
      scale: B's magnitude, in units of Glorot's standard deviation σ_l for θ_l's shape.
    """

    def magnitudes(params, state):
        return jax.tree.map(lambda w: scale * ngf.glorot_std(w.shape), tuple(params[1:])), state

    return _sign_rule(ngf.stateless_init, magnitudes)


class FrsfState(NamedTuple):
    """The fixed magnitudes |R_l|, one pytree per node l ≥ 2."""

    magnitudes: tuple


def frsf(scale: float = 1.0, dist: str = "normal") -> ngf.LearningRule:
    """Fixed random-magnitude sign-concordant feedback: B_l = sign(θ_l) ⊙ |R_l|, R_l drawn once.

    Args:
      scale: R's scale, in units of Glorot's standard deviation for θ_l's shape.
      dist: R's distribution, ``normal`` or ``uniform`` (same standard deviation).
    """
    ngf.check_distribution(dist, "frsf option dist")

    def init(key, net, params):
        return FrsfState(random_magnitudes(key, params, scale, dist))

    return _sign_rule(init, lambda params, state: (state.magnitudes, state))


class BrsfState(NamedTuple):
    """The key the next step's magnitudes are drawn from."""

    key: jax.Array


def brsf(scale: float = 1.0, dist: str = "normal") -> ngf.LearningRule:
    """Batchwise random-magnitude sign-concordant feedback: |R_l| redrawn at every step.

    Args:
      scale: R's scale, in units of Glorot's standard deviation for θ_l's shape.
      dist: R's distribution, ``normal`` or ``uniform`` (same standard deviation).
    """
    ngf.check_distribution(dist, "brsf option dist")

    def init(key, net, params):
        return BrsfState(key)

    def magnitudes(params, state):
        key, draw = jax.random.split(state.key)
        return random_magnitudes(draw, params, scale, dist), BrsfState(key)

    return _sign_rule(init, magnitudes)
