"""ddtp: direct targets and signals by hand, Q's reconstruction gradient and loss by hand and the step the
run's optimiser takes on them (q_lr_scale × its lr, without its weight decay), Q learning, bad options,
and the graph models (cnn, resnet)."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from ngf.core.engine import Engine, make_train_step
from ngf.core.errors import NgfError
from ngf.core.network import Network, sum_of_parents
from ngf.host.registry import load_registry
from ngf.plugins.ddtp import (ddtp, direct_targets, draw_noise, feedback_gradients, forward_from,
                              reconstruction_loss)
from ngf.runs.config import RunConfig, make_optimizer, make_rule_optimizer
from ngf_tiny_mlp import run_owned_rule, assert_updates, batch, bias, kernel, numpy_forward, output_error, tiny_network

BETA, SIGMA, Q_LR, DECAY = 0.5, 0.1, 0.01, 0.01


def run_ddtp(rule, net, params, x, y, key=3):
    """One jitted step of ``rule`` called as the engine calls it, with Q drawn from ``key``:
    (signals, the ``Updates`` of the forward weights and of Q with the metrics, Q)."""
    return run_owned_rule(rule, net, params, x, y, key)


def numpy_logits_from(params, l, z):
    """h^L of the tanh mlp when z^l (0-based node l) is replaced by z, in numpy."""
    for m in range(l + 1, len(params)):
        h = z @ kernel(params[m]) + bias(params[m])
        z = np.tanh(h) if m < len(params) - 1 else h
    return h


def test_targets_signals_and_updates_match_hand_computation():
    net, params = tiny_network(widths=(4, 3))
    x, y = batch()
    rule = ddtp(beta=BETA)
    deltas, updates, feedback = run_ddtp(rule, net, params, x, y)
    q = [np.asarray(f) for f in feedback[:2]]
    zs, hs = numpy_forward(params, x)
    e = output_error(hs[-1], y)
    y_out = hs[-1] - BETA * e                                        # ŷ^L = h^L − β e
    targets = [zs[l + 1] + (y_out - hs[-1]) @ q[l].T for l in range(2)]  # ŷ^l = z^l + Q_l (ŷ^L − h^L)
    expected = [(1 - zs[l + 1] ** 2) * (zs[l + 1] - targets[l]) for l in range(2)] + [e]  # f'(h^l) ⊙ (z^l − ŷ^l)
    for got, want in zip(deltas, expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert_updates(updates.params, zs, expected)
    _, trace = net.forward(params, x)
    for got, want in zip(direct_targets(trace, y, feedback, BETA), targets):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert [f is None for f in feedback] == [False, False, True]  # the output node has no Q
    assert [g is None for g in updates.rule_params] == [False, False, True]  # Q's gradient, taken after
    assert updates.rule_params[0].shape == (4, 2) and np.any(updates.rule_params[0] != 0)


def test_q_gradient_matches_hand_computation_and_is_the_step_taken():
    """∇R by hand on the engine's step-key noise; the engine's step moves Q by the run's optimiser (plain
    sgd, so the change is −lr × q_lr_scale × ∇R exactly) without the run's weight decay (Q's λ is in R),
    and reports R's mean over the nodes as ``reconstruction``."""
    net, params = tiny_network(widths=(4, 3))
    x, y = batch()
    scale = 0.5
    rule = ddtp(noise=SIGMA, q_lr_scale=scale, q_decay=DECAY)
    config = RunConfig(optimizer="sgd", lr=Q_LR, schedule="constant", weight_decay=0.5)
    engine = Engine(net, rule, make_optimizer(config, 1), 3, 3, 1, rule_optimizer=make_rule_optimizer(config, 1, rule))
    state = engine.fresh(jax.random.key(3), params)
    feedback = state.rule_params
    _, trace = net.forward(params, x)
    step_key = jax.random.fold_in(state.key, state.step)  # the engine's key for this step
    noises = draw_noise(step_key, trace, feedback, SIGMA)
    grads, loss = feedback_gradients(net, params, trace, feedback, noises, DECAY)
    zs, hs = numpy_forward(params, x)
    by_hand, losses = [], []
    for l in range(2):
        eps, q = np.asarray(noises[l]), np.asarray(feedback[l])
        diff = numpy_logits_from(params, l, zs[l + 1] + eps) - hs[-1]  # h^L(z^l + ε) − h^L(z^l)
        # R = mean_n ‖QΔ_n − ε_n‖² + λ‖Q‖², ∇_Q R = 2 (QΔ − ε)ᵀΔ / B + 2λQ
        losses.append(np.sum((diff @ q.T - eps) ** 2) / len(eps) + DECAY * np.sum(q ** 2))
        by_hand.append(2 * (diff @ q.T - eps).T @ diff / len(eps) + 2 * DECAY * q)
        np.testing.assert_allclose(grads[l], by_hand[l], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(loss, np.mean(losses), rtol=1e-4)
    assert grads[2] is None and noises[2] is None
    assert np.std(np.asarray(noises[0])) == pytest.approx(SIGMA, rel=0.6)
    after, sums = jax.jit(make_train_step(net, rule, engine.optimizer, engine.rule_optimizer))(state, x, y)
    for l in range(2):
        np.testing.assert_allclose(after.rule_params[l] - feedback[l], -Q_LR * scale * by_hand[l], rtol=1e-3, atol=1e-8)
    np.testing.assert_allclose(sums[-1], np.mean(losses), rtol=1e-4)  # the step's ``reconstruction``
    assert rule.metrics == ("reconstruction",)


def test_q_learns_to_reconstruct_the_noise():
    """On a fixed batch, R_l(Q) on held-out noise falls most of the way to its least-squares minimum."""
    net, params = tiny_network(widths=(4, 3))
    x = jax.random.normal(jax.random.key(5), (256, 3))
    y = jnp.zeros(256, jnp.int32)
    rule = ddtp(noise=SIGMA, q_decay=0.0)
    # the run's forward weights held (the trace fixed); Q under Adam at Q_LR, as the engine steps it
    engine = Engine(net, rule, optax.set_to_zero(), 256, 256, 1, rule_optimizer=optax.adam(Q_LR))
    step = make_train_step(net, rule, engine.optimizer, engine.rule_optimizer)
    state = engine.fresh(jax.random.key(0), params)
    _, trace = net.forward(params, x)
    eps = SIGMA * jax.random.normal(jax.random.key(9), trace[0].out.shape)  # held-out noise at node 0
    diff = forward_from(net, params, trace, 0, trace[0].out + eps) - trace[-1].pre
    best = jnp.linalg.lstsq(diff, eps)[0].T  # the Q that minimises R_0 on this noise
    loss = lambda q: float(reconstruction_loss(q, net, params, trace, 0, eps))

    @jax.jit
    def steps(st):  # fresh noise each step, from the step's key
        return jax.lax.scan(lambda st, _: (step(st, x, y)[0], None), st, None, length=300)[0]

    before, after = loss(state.rule_params[0]), loss(steps(state).rule_params[0])
    assert after < before and after - loss(best) < 0.2 * (before - loss(best))


@pytest.mark.parametrize("options", [
    {"beta": -0.1}, {"beta": math.nan}, {"noise": 0.0}, {"noise": -0.1}, {"noise": math.inf},
    {"q_lr_scale": -1.0}, {"q_lr_scale": math.nan}, {"q_decay": -1e-6}, {"q_scale": 0.0}, {"q_dist": "cauchy"}, {"beta": True},
])
def test_bad_hyperparameters_are_refused(options):
    with pytest.raises(NgfError, match=r"ddtp option|distribution"):
        load_registry().get("rule", "ddtp").factory(**options)


SHAPE = (8, 8, 1)
MODELS = {"cnn": {"channels": (3, 4), "widths": (6, 5)}, "resnet": {"stem": 3, "widths": (3, 4), "blocks": (1, 1)}}


@functools.cache  # each model once per session: building one costs more than the test
def build(name):
    model = load_registry().get("model", name).factory(SHAPE, 3, rngs=nnx.Rngs(0), **MODELS[name])
    return model, *Network.from_model(model, SHAPE)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_weight_node_gets_a_finite_nonzero_update(name):
    _, net, params = build(name)
    x = jax.random.uniform(jax.random.key(0), (4,) + SHAPE)
    deltas, updates, feedback = run_ddtp(ddtp(), net, params, x, jnp.arange(4) % 3)
    shapes = net.trace_shapes(params)
    for l, (theta, q) in enumerate(zip(params, feedback)):
        weights = bool(jax.tree.leaves(theta))
        if weights and l < net.depth - 1:  # Q_l maps the output to z^l itself, also where a pool reads z^l
            assert q.shape == (math.prod(shapes[l].out.shape[1:]), 3)
            grad = updates.rule_params[l]  # and learns: a finite, nonzero gradient of its own shape
            assert grad.shape == q.shape and np.all(np.isfinite(grad)) and np.any(grad != 0), f"Q {l}"
        else:
            assert q is None and updates.rule_params[l] is None
        if not weights:  # a sum node: no Q, target ŷ = z, so δ = 0 and the update is empty
            assert not np.any(deltas[l]) and not jax.tree.leaves(updates.params[l])
        for u in jax.tree.leaves(updates.params[l]):
            assert np.all(np.isfinite(u)) and np.any(u != 0), f"node {l}"
    assert any(net.read_pool(l) is not None for l in range(net.depth)) == (name == "cnn")


def test_forward_from_carries_noise_through_the_resnet_graph():
    """forward_from(l, z^l + ε) equals the model's own forward with ε added at node l's output."""
    model, net, params = build("resnet")
    x = jax.random.uniform(jax.random.key(0), (2,) + SHAPE)
    _, trace = net.forward(params, x)
    for l in range(net.depth - 1):
        eps = 0.1 * jax.random.normal(jax.random.key(l), trace[l].out.shape)
        outs = []
        for m, (layer, parents) in enumerate(zip(model.layers, model.reads)):
            h = layer(sum_of_parents(parents, x, outs))
            outs.append(layer.activation(h) + (eps if m == l else 0))
        np.testing.assert_allclose(forward_from(net, params, trace, l, trace[l].out + eps), h, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("widths", [(), (4,)])
def test_shallow_networks(widths):
    net, params = tiny_network(widths=widths)
    x, y = batch()
    deltas, updates, feedback = run_ddtp(ddtp(), net, params, x, y)
    np.testing.assert_allclose(deltas[-1], output_error(numpy_forward(params, x)[1][-1], y), rtol=1e-5, atol=1e-6)
    assert [q is None for q in feedback] == [False] * len(widths) + [True]
    assert (float(updates.metrics["reconstruction"]) > 0) == bool(widths)  # 0 without a Q
