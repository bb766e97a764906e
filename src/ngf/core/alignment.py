"""Alignment with backprop: the angle between a rule's update and the true gradient.

For one batch and one set of parameters, each layer's update under a rule is
compared with the gradient of the mean batch loss for the same batch and
parameters, as the angle between the two flattened vectors (0° = the same
direction, 90° = orthogonal). Rules that apply their change directly (local
search) move the parameters by +update, gradient rules by −update; both are put
as descent directions before comparing. A layer whose update or gradient is zero
gets NaN.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ngf.core.step import TrainState, prepare_inputs, rule_pass
from ngf.core.network import Network, Params
from ngf.core.rule import LearningRule, RuleState, predict


def angle_degrees(a, b) -> jax.Array:
    """The angle in degrees between two pytrees seen as flat vectors (NaN if either is zero).

    Uses 2·atan2(‖â − b̂‖, ‖â + b̂‖), which stays exact near 0° and 180° where arccos does not.
    """
    a = jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(a)] or [jnp.zeros(0)])
    b = jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(b)] or [jnp.zeros(0)])
    na, nb = jnp.linalg.norm(a), jnp.linalg.norm(b)
    ua, ub = a / jnp.where(na > 0, na, 1.0), b / jnp.where(nb > 0, nb, 1.0)
    angle = 2.0 * jnp.arctan2(jnp.linalg.norm(ua - ub), jnp.linalg.norm(ua + ub))
    return jnp.where((na > 0) & (nb > 0), jnp.degrees(angle), jnp.nan)


def loss_gradient(net: Network, params: Params, x: jax.Array, labels: jax.Array, rule: LearningRule | None = None,
                  state: RuleState = (), rule_params=()) -> Params:
    """∇θ of the mean of the network's loss over the batch, of the logits or of ``rule``'s ``predict``:
    the exact backprop gradient."""
    def mean_loss(p):
        scores = net.logits(p, x) if rule is None else predict(rule, net, p, x, state, rule_params)
        return jnp.mean(net.loss.per_example(scores, labels))

    return jax.grad(mean_loss)(params)


def rule_update(net: Network, rule: LearningRule, state: TrainState, x: jax.Array, labels: jax.Array) -> Params:
    """The update a rule proposes for one batch from the engine's ``state``, as a descent direction
    (comparable to ∇θ)."""
    updates, _, _ = rule_pass(net, rule, state, x, labels)
    return jax.tree.map(jnp.negative, updates.params) if rule.applies_directly else updates.params


def alignment_angles(net: Network, rule: LearningRule, params: Params, state: RuleState,
                     x: jax.Array, labels: jax.Array, rule_params=(), key: jax.Array | None = None,
                     step: jax.Array | int = 0) -> jax.Array:
    """Per-layer angles in degrees between ``rule``'s update and the backprop gradient of its prediction's loss.

    Pure and jit-compatible; the rule's state is read, never advanced. ``rule_params``, ``key``
    and ``step`` are what the rule's functions may ask for (the engine's ``TrainState`` fields;
    ``key`` defaults to ``jax.random.key(0)``).
    """
    key = jax.random.key(0) if key is None else key
    train_state = TrainState(params, (), state, rule_params, (), key, jnp.asarray(step, jnp.int32))
    update = rule_update(net, rule, train_state, x, labels)
    grad = loss_gradient(net, params, x, labels, rule, state, rule_params)
    return jnp.stack([angle_degrees(u, g) for u, g in zip(update, grad)])


def alignment_tracker(net: Network, rule: LearningRule, x: jax.Array, labels: jax.Array):
    """A function ``state -> [degrees per layer]`` on one fixed batch: one jitted call per use.

    NaN angles (a zero update, a layer without parameters) come back as None, for JSON.

    ``x`` are raw inputs (the engine's ``prepare_inputs`` is applied here); ``state`` is
    the engine's ``TrainState``.
    """
    angles = jax.jit(lambda state: alignment_angles(
        net, rule, state.params, state.rule_state, prepare_inputs(x), labels, state.rule_params, state.key,
        state.step))

    def track(state) -> list[float]:
        return [None if math.isnan(a) else float(a) for a in jax.device_get(angles(state))]

    return track


def kernels(theta) -> list:
    """The leaves of a node's parameters that mix units (two or more axes): what J^T reads."""
    return [leaf for leaf in jax.tree.leaves(theta) if leaf.ndim >= 2]


def feedback_angles(params: Params, feedback: tuple) -> list:
    """∠(B_l, W_l) in degrees for each node with feedback weights B_l (None elsewhere).

    Compares the kernels only: a feedback pytree's bias entries are never read. For
    ``kp`` the angle falls toward 0 as B converges to W; for ``fa`` it stays near 90°.
    """
    return [None if b is None or not kernels(b) else float(angle_degrees(kernels(b), kernels(w)))
            for w, b in zip(params, feedback)]
