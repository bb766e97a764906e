"""LRA's targets and updates against a hand computation, its locality, and LRA-E."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ngf.core.errors import NgfError
from ngf.core.network import Network
from ngf.models import mlp
from ngf.plugins.bp import bp
from ngf.plugins.lra import lra

BETA = 0.3


def tiny_network(widths=(4,)):
    model = mlp((3,), 2, rngs=nnx.Rngs(1), widths=widths, activation="tanh")
    return Network.from_model(model, (3,))


def batch():
    x = jnp.array([[0.5, -1.0, 2.0], [1.5, 0.2, -0.3]], jnp.float32)
    return x, jnp.array([1, 0])


def kernel(theta):
    return np.asarray(theta["linear"]["kernel"])


def test_lra_targets_and_updates_match_hand_computation():
    net, params = tiny_network()
    rule = lra(beta=BETA)
    state = rule.init(jax.random.key(0), net, params)
    x, y = batch()
    _, trace = net.forward(params, x)
    deltas, state = rule.compute_targets(net, params, trace, y, state)
    updates, _ = rule.local_update(net, params, trace, deltas, state)

    w1, b1 = kernel(params[0]), np.asarray(params[0]["linear"]["bias"])
    w2, b2 = kernel(params[1]), np.asarray(params[1]["linear"]["bias"])
    e2 = kernel(state.feedback[1])
    xn = np.asarray(x)
    h1 = xn @ w1 + b1
    z1 = np.tanh(h1)
    h2 = z1 @ w2 + b2
    p = np.exp(h2 - h2.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    e = p - np.eye(2)[np.asarray(y)]                 # δ^L = e
    h1_target = h1 - BETA * e @ e2.T                 # h̃ = h − β Eᵀδ
    delta1 = (1 - np.tanh(h1) ** 2) * (z1 - np.tanh(h1_target))  # f'(h) ⊙ (z − y)

    np.testing.assert_allclose(deltas[1], e, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(deltas[0], delta1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(kernel(updates[0]), xn.T @ delta1 / 2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(updates[0]["linear"]["bias"], delta1.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(kernel(updates[1]), z1.T @ e / 2, rtol=1e-5, atol=1e-6)


def perturb_layers(params, layers, amount=0.7):
    return tuple(jax.tree.map(lambda a: a + amount, p) if l in layers else p for l, p in enumerate(params))


def signals_with(rule, net, params, trace, y):
    state = rule.init(jax.random.key(0), net, params)
    return rule.compute_targets(net, params, trace, y, state)[0]


def test_lra_signal_ignores_forward_weights_above():
    net, params = tiny_network(widths=(4, 5))
    x, y = batch()
    _, trace = net.forward(params, x)  # the trace stays fixed
    changed = perturb_layers(params, {1, 2})
    before = signals_with(lra(), net, params, trace, y)
    after = signals_with(lra(), net, changed, trace, y)
    for l in range(net.depth):
        np.testing.assert_array_equal(before[l], after[l])
    # the same change does move backprop's signal, so the check has teeth
    assert not np.allclose(signals_with(bp(), net, params, trace, y)[0],
                           signals_with(bp(), net, changed, trace, y)[0])


@pytest.mark.parametrize("e_decay", [0.0, 0.01])
def test_lra_e_receives_the_applied_change(e_decay):
    net, params = tiny_network()
    rule = lra(learn_e=True, gamma=2.0, e_decay=e_decay)
    state = rule.init(jax.random.key(0), net, params)
    changes = jax.tree.map(lambda a: 0.01 * jnp.cos(a), params)  # some ΔW the optimiser applied
    new_params, new_state = rule.apply_changes(net, params, changes, state)
    e, w, dw = kernel(state.feedback[1]), kernel(params[1]), kernel(changes[1])
    np.testing.assert_allclose(kernel(new_state.feedback[1]), e + 2.0 * dw - e_decay * e, rtol=1e-6)  # E ← E + γΔW − λE
    np.testing.assert_allclose(kernel(new_params[1]), w + dw - e_decay * w, rtol=1e-6)  # W ← W + ΔW − λW
    assert new_state.feedback[0] is None


def test_lra_e_decay_needs_learned_e():
    with pytest.raises(NgfError, match="e_decay needs learn_e"):
        lra(e_decay=0.1)
    assert lra().apply_changes is None  # a fixed E leaves θ ← θ + ΔW to the engine


def test_lra_fixed_e_stays_fixed():
    net, params = tiny_network()
    rule = lra()
    state = rule.init(jax.random.key(0), net, params)
    x, y = batch()
    _, trace = net.forward(params, x)
    deltas, state = rule.compute_targets(net, params, trace, y, state)
    _, new_state = rule.local_update(net, params, trace, deltas, state)
    np.testing.assert_array_equal(kernel(new_state.feedback[1]), kernel(state.feedback[1]))


def test_bp_matches_autodiff_gradient():
    net, params = tiny_network(widths=(4, 5))
    x, y = batch()
    rule = bp()
    _, trace = net.forward(params, x)
    deltas, _ = rule.compute_targets(net, params, trace, y, ())
    updates, _ = rule.local_update(net, params, trace, deltas, ())

    def loss(p):
        logits = net.logits(p, x)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))

    grads = jax.grad(loss)(params)
    for got, want in zip(jax.tree.leaves(updates), jax.tree.leaves(grads)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
