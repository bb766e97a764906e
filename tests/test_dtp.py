"""dtp: difference targets and the inverses' reconstruction gradient and loss by hand, and that the
inverses (the rule's trainable parameters) learn under the run's optimiser at inverse_lr_scale × its lr."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from ngf.core.engine import Engine, make_train_step
from ngf.core.network import Network
from ngf.models.conv import Conv, MaxPool
from ngf.models.layers import Dense, Sequential
from ngf.plugins.dtp import dtp, inverse, inverse_gradients, reconstruction_loss
from ngf.runs.config import RunConfig, make_rule_optimizer
from ngf_tiny_mlp import run_owned_rule, assert_updates, batch, kernel, numpy_forward, output_error, tiny_network

ETA_HAT = 0.3


def run_dtp(rule, net, params, x, y, key=3):
    """One jitted step of ``rule`` called as the engine calls it, with its inverses drawn from ``key``:
    (signals, the ``Updates`` of the forward weights and of its inverses with the metrics, its inverses)."""
    return run_owned_rule(rule, net, params, x, y, key)


def g_numpy(inv, v):
    """g(v) = tanh(ωᵀ-map of v + c) for a dense layer: J^T(ω, v) = v ωᵀ."""
    return np.tanh(v @ kernel(inv.omega).T + np.asarray(inv.bias))


def test_targets_and_updates_match_hand_computation():
    net, params = tiny_network(widths=(4, 3))
    x, y = batch()
    deltas, updates, inverses = run_dtp(dtp(eta_hat=ETA_HAT), net, params, x, y)
    inv = inverses[1]
    zs, hs = numpy_forward(params, x)
    e = output_error(hs[-1], y)
    y2 = zs[2] - ETA_HAT * e @ kernel(params[2]).T                  # ŷ^{L-1} = z^{L-1} − η̂ ∂L/∂z^{L-1}
    y1 = zs[1] + g_numpy(inv, y2) - g_numpy(inv, zs[2])             # ŷ^{l-1} = z^{l-1} + g(ŷ^l) − g(z^l)
    expected = [(1 - zs[1] ** 2) * (zs[1] - y1),                    # δ^l = f'(h^l) ⊙ (z^l − ŷ^l)
                (1 - zs[2] ** 2) * (zs[2] - y2), e]
    for got, want in zip(deltas, expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert_updates(updates.params, zs, expected)
    assert jax.tree.structure(updates.rule_params) == jax.tree.structure(inverses)  # ∇ of the inverses
    assert set(updates.metrics) == {"reconstruction"} and float(updates.metrics["reconstruction"]) > 0


def test_only_layers_between_hidden_layers_have_inverses():
    net, params = tiny_network(widths=(4, 3, 5))
    inverses = dtp().init_params(jax.random.key(0), net, params)
    assert [inv is not None for inv in inverses] == [False, True, True, False]
    assert inverses[1].bias.shape == (4,)  # c_l is shaped like z^{l-1}
    assert jax.tree.structure(inverses[2].omega) == jax.tree.structure(params[2])


def test_reconstruction_gradient_matches_hand_computation():
    net, params = tiny_network(widths=(4, 3))
    x, _ = batch()
    inv = dtp().init_params(jax.random.key(1), net, params)[1]
    inv = inv._replace(bias=jnp.array([0.1, -0.2, 0.3, 0.05]))
    _, trace = net.forward(params, x)
    grads, loss = inverse_gradients(net, params, trace, (None, inv, None), jax.random.key(0), noise=0.0)
    u = np.asarray(trace[1].inputs)                                 # z^{l-1}, no noise
    z = np.tanh(u @ kernel(params[1]) + np.asarray(params[1]["linear"]["bias"]))
    r = g_numpy(inv, z)
    dpre = (r - u) / u.shape[0] * (1 - r ** 2)                      # ∂(½‖r − u‖²/B)/∂(pre-tanh)
    np.testing.assert_allclose(kernel(grads[1].omega), dpre.T @ z, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grads[1].bias, dpre.sum(0), rtol=1e-4, atol=1e-6)
    assert grads[0] is None and grads[2] is None
    np.testing.assert_allclose(loss, 0.5 * np.sum((r - u) ** 2) / u.shape[0], rtol=1e-5)  # ½‖g(z) − u‖²/B


def test_inverses_learn_to_reconstruct():
    """The engine's step trains the inverses with the run's optimiser at inverse_lr_scale × its lr, on
    fresh noise each step (the step's key); the forward weights are held fixed, so the trace is too."""
    net, params = tiny_network(widths=(4, 3))
    x = jax.random.normal(jax.random.key(5), (64, 3))
    y = jnp.zeros(64, jnp.int32)
    _, trace = net.forward(params, x)
    no_noise = jnp.zeros(trace[1].inputs.shape)
    loss = lambda st: reconstruction_loss(st.rule_params[1], net, 1, params[1], trace, no_noise)
    config = RunConfig(lr=0.01, schedule="constant")

    def train(scale):
        rule = dtp(inverse_lr_scale=scale, noise=0.05)
        rule_optimizer = make_rule_optimizer(config, 200, rule) or optax.adam(config.lr)  # Adam(0.01 × scale)
        engine = Engine(net, rule, optax.set_to_zero(), 64, 64, 1, rule_optimizer=rule_optimizer)
        step = make_train_step(net, rule, engine.optimizer, engine.rule_optimizer)
        state = engine.fresh(jax.random.key(0), params)
        after = jax.jit(lambda st: jax.lax.scan(lambda st, _: (step(st, x, y)[0], None), st, None, length=200)[0])
        return loss(state), loss(after(state))

    before, learned = train(5.0)
    assert learned < 0.5 * before
    np.testing.assert_allclose(train(0.0), (before, before), rtol=1e-6)  # scale 0: the inverses stay as drawn


def pooled_conv_network():
    rngs = nnx.Rngs(0)
    layers = [Conv(1, 2, 3, jnp.tanh, rngs=rngs), Conv(2, 3, 3, jnp.tanh, pool=MaxPool(2), rngs=rngs),
              Dense(2 * 2 * 3, 2, pool=MaxPool(2), rngs=rngs)]
    return Network.from_model(Sequential(layers), (8, 8, 1))


def test_a_convolution_gets_a_transposed_convolution_as_inverse():
    net, params = pooled_conv_network()
    x = jax.random.uniform(jax.random.key(0), (2, 8, 8, 1))
    inverses = dtp().init_params(jax.random.key(0), net, params)
    trace = net.trace_shapes(params, batch=2)

    def back(trace):  # z^2 → z^1's shape, through the transposed convolution and the unpooling
        return inverse(net, 1, inverses[1], trace, trace[1].out)

    assert jax.eval_shape(back, trace).shape == trace[1].inputs.shape == (2, 8, 8, 2)
    deltas, updates, inverses = run_dtp(dtp(), net, params, x, jnp.array([0, 1]))
    assert [d.shape for d in deltas] == [t.pre.shape for t in trace]
    assert all(np.all(np.isfinite(u)) for u in jax.tree.leaves(updates))  # forward's, inverses', metric
    for grad, inv in zip(updates.rule_params, inverses):  # each inverse's gradient has its shapes
        assert jax.tree.map(np.shape, grad) == jax.tree.map(np.shape, inv)


@pytest.mark.parametrize("widths", [(), (4,)])
def test_shallow_networks(widths):
    net, params = tiny_network(widths=widths)
    x, y = batch()
    deltas, updates, inverses = run_dtp(dtp(), net, params, x, y)
    assert len(deltas) == net.depth and all(inv is None for inv in inverses)
    assert float(updates.metrics["reconstruction"]) == 0  # no inverse, nothing to reconstruct


@pytest.mark.parametrize("model", ["mlp", "pooled-conv", "resnet"])
def test_reconstruction_gradient_by_hand_equals_autodiff(model):
    """The hand-written ∇(ω, c) of the inverse's loss equals jax.grad of reconstruction_loss."""
    from ngf.host.registry import load_registry
    from ngf.plugins.dtp import reconstruction_gradient, reconstruction_loss
    if model == "pooled-conv":
        net, params = pooled_conv_network()
        x = jax.random.uniform(jax.random.key(0), (3, 8, 8, 1))
    else:
        opts = {"mlp": {"widths": (6, 5)}, "resnet": {"stem": 3, "widths": (3, 4), "blocks": (1, 1)}}[model]
        factory = load_registry().get("model", model).factory
        net, params = Network.from_model(factory((8, 8, 1), 3, rngs=nnx.Rngs(0), **opts), (8, 8, 1))
        x = jax.random.uniform(jax.random.key(0), (3, 8, 8, 1))
    inverses = dtp().init_params(jax.random.key(1), net, params)
    _, trace = net.forward(params, x)
    for l, inv in enumerate(inverses):
        if inv is None:
            continue
        eps = 0.1 * jax.random.normal(jax.random.key(l), trace[l].inputs.shape)
        ours, our_loss = reconstruction_gradient(inv, net, l, params[l], trace, eps)
        loss, reference = jax.value_and_grad(reconstruction_loss)(inv, net, l, params[l], trace, eps)
        for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(reference)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(our_loss, loss, rtol=1e-5)
