"""The ngf side of the ff, fg, ep and local-loss comparisons: a float64 20-16-12-5 mlp, a batch of 8,
and one jitted step of a rule called as the engine calls it (with ``x``, ``key`` and ``rule_params``)."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from flax import nnx

from ngf.core.losses import loss_named
from ngf.core.network import Network
from ngf.core.rule import as_updates, call
from ngf.models import mlp
from ngf_tiny_mlp import bias, kernel
from ref_dense import BATCH, N_CLASSES, N_IN  # one definition of the comparisons' sizes
from reference_kit import as_float64


def network(activation: str = "relu", widths=(16, 12), loss: str = "ce"):
    """A 20-16-12-5 mlp with ``activation`` and the run's loss ``loss``, its parameters in float64
    (call inside ``float64()``)."""
    model = mlp(input_shape=(N_IN,), n_classes=N_CLASSES, rngs=nnx.Rngs(0), widths=widths, activation=activation)
    net, params = Network.from_model(model, (N_IN,))
    return dataclasses.replace(net, loss=loss_named(loss)), as_float64(params)


def batch(seed: int = 0):
    """Eight inputs in [0, 1] (float64) and their labels, every class present."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, (BATCH, N_IN))
    y = np.array([0, 1, 2, 3, 4, 0, 2, 4])
    return jax.numpy.asarray(x, jax.numpy.float64), jax.numpy.asarray(y)


def dense(theta) -> tuple:
    """(kernel [in, out], bias) of a dense node, as numpy float64."""
    return np.asarray(kernel(theta), np.float64), np.asarray(bias(theta), np.float64)


def own_step(rule, net, params, x, y, key, rule_params=None, trace: bool = True):
    """One jitted step of ``rule`` as the engine calls it: (signals, ``Updates``). ``key`` is the step's
    key; the state comes from ``rule.init``; with ``trace`` the engine's forward trace is passed."""
    @jax.jit
    def step(params, rule_params, key):
        state = rule.init(jax.random.key(0), net, params)
        tr = net.forward(params, x)[1] if trace else None
        extras = {"x": x, "key": key, "rule_params": rule_params}
        signals, state = call(rule.compute_targets, net, params, tr, y, state, extras=extras)
        updates, _ = call(rule.local_update, net, params, tr, signals, state, extras=extras)
        return signals, as_updates(rule, updates)

    return step(params, rule_params, key)
