"""A tanh mlp of a few units and its forward pass in numpy, for rule equation tests."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ngf.core.network import Network
from ngf.core.rule import call, node_updates
from ngf.models import mlp


def tiny_network(widths=(4,)):
    """A 3-input, 2-class tanh mlp and its parameters."""
    model = mlp(input_shape=(3,), n_classes=2, rngs=nnx.Rngs(0), widths=widths, activation="tanh")
    return Network.from_model(model, (3,))


def batch():
    """Three examples and their labels."""
    x = jnp.array([[0.5, -1.0, 2.0], [1.5, 0.2, -0.3], [-0.7, 0.9, 0.1]], jnp.float32)
    return x, jnp.array([1, 0, 1])


def kernel(theta) -> np.ndarray:
    """A dense layer's weight matrix (tests may read it; rules never do)."""
    return np.asarray(theta["linear"]["kernel"])


def bias(theta) -> np.ndarray:
    """A dense layer's bias."""
    return np.asarray(theta["linear"]["bias"])


def numpy_forward(params, x):
    """The outputs z^0 … z^L and pre-activations h^1 … h^L of the tanh mlp, in numpy."""
    zs, hs, z = [np.asarray(x)], [], np.asarray(x)
    for l, theta in enumerate(params):
        h = z @ kernel(theta) + bias(theta)
        hs.append(h)
        z = np.tanh(h) if l < len(params) - 1 else h
        zs.append(z)
    return zs, hs


def output_error(logits, y) -> np.ndarray:
    """e = softmax(h^L) − onehot(y), per example."""
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return p - np.eye(p.shape[1])[np.asarray(y)]


def run_rule(rule, net, params, x, y, key=3):
    """One jitted step of ``rule``: (signals, updates, state after the step)."""
    state = rule.init(jax.random.key(key), net, params)

    @jax.jit  # one compilation instead of one per eager operation
    def step(params, state):
        _, trace = net.forward(params, x)
        signals, state = rule.compute_targets(net, params, trace, y, state)
        updates, state = rule.local_update(net, params, trace, signals, state)
        return signals, node_updates(updates), state

    return step(params, state)


def run_owned_rule(rule, net, params, x, y, key=3):
    """One jitted step of a rule with trainable parameters, called as the engine calls it, its parameters
    drawn from ``key``: (signals, ``local_update``'s ``Updates``, the rule's parameters)."""
    owned = rule.init_params(jax.random.key(key), net, params)

    @jax.jit  # one compilation instead of one per eager operation
    def step(params, owned):
        _, trace = net.forward(params, x)
        state = rule.init(jax.random.key(key), net, params)
        extras = {"rule_params": owned, "key": jax.random.key(key + 1), "x": x}  # each function gets those it names
        signals, state = call(rule.compute_targets, net, params, trace, y, state, extras=extras)
        updates, _ = call(rule.local_update, net, params, trace, signals, state, extras=extras)
        return signals, updates

    return *step(params, owned), owned


def assert_updates(updates, zs, deltas):
    """ΔW_l = z^{l-1}ᵀδ^l / batch and Δb_l = mean δ^l (per-example signals, averaged)."""
    n = zs[0].shape[0]
    for l, d in enumerate(deltas):
        np.testing.assert_allclose(kernel(updates[l]), zs[l].T @ d / n, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(bias(updates[l]), d.mean(0), rtol=1e-5, atol=1e-6)
