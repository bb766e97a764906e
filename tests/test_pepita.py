"""pepita against a hand computation of both passes, its fixed F, its options, and its reach on graphs."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from ngf.core.engine import TrainState, make_train_step
from ngf.core.errors import NgfError
from ngf.core.network import Network
from ngf.host.registry import load_registry
from ngf.plugins.pepita import pepita
from ngf_tiny_mlp import assert_updates, batch, kernel, numpy_forward, output_error, run_rule, tiny_network

REGISTRY = load_registry()
SHAPE = (8, 8, 1)
MODELS = {  # small versions of the built-in image models
    "cnn": {"channels": (3, 4), "widths": (6, 5)},
    "resnet": {"stem": 3, "widths": (3, 4), "blocks": (1, 1)},
}


def hand_computation(params, x, y, f):
    """Both passes in numpy: (signals δ^l, pass-2 outputs z'^0 … z'^L with z'^0 = x')."""
    zs, hs = numpy_forward(params, x)                       # pass 1: z^l, h^l
    e = output_error(hs[-1], y)                             # e = softmax(h^L) − onehot(y)
    modulated, _ = numpy_forward(params, np.asarray(x) + e @ f.T)  # pass 2 on x' = x + F e
    deltas = [zs[l] - modulated[l] for l in range(1, len(params))] + [e]  # δ^l = z^l − z'^l; δ^L = e
    return deltas, modulated


@pytest.mark.parametrize("dist", ["uniform", "normal"])
def test_signals_and_updates_match_hand_computation(dist):
    net, params = tiny_network(widths=(4, 3))
    x, y = batch()
    # a large F, so that z − z' stands well above float32's rounding of z and z'
    signals, updates, state = run_rule(pepita(f_scale=0.5, dist=dist), net, params, x, y)
    f = np.asarray(state.projection)
    assert f.shape == (3, 2)  # [size(x), n_classes]
    deltas, modulated = hand_computation(params, x, y, f)
    for got, want in zip(signals.deltas, deltas):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert all(np.abs(d).max() > 0 for d in deltas[:-1])  # the modulation reached every hidden node
    for got, want in zip(signals.inputs, modulated[:-1]):  # u'^l = z'^{l−1}, x' for the first node
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert_updates(updates, modulated, deltas)  # ΔW_l = z'^{l−1}ᵀ δ^l / batch: at the PASS-2 input


def test_a_step_descends_along_the_papers_delta_w():
    """The paper's W ← W − η ΔW, ΔW_l = (h_l − h_l^err) ⊗ h_{l−1}^err (batch mean): SGD moves W by −η ΔW."""
    net, params = tiny_network(widths=(4,))
    x, y = batch()
    rule, lr = pepita(f_scale=0.5), 0.5
    state = rule.init(jax.random.key(3), net, params)
    deltas, modulated = hand_computation(params, x, y, np.asarray(state.projection))
    sgd = optax.sgd(lr)
    step = jax.jit(make_train_step(net, rule, sgd))
    after, _ = step(TrainState(params, sgd.init(params), state), x, y)  # float images enter as they are
    for l, d in enumerate(deltas):
        delta_w = modulated[l].T @ d / len(x)
        np.testing.assert_allclose(kernel(after.params[l]), kernel(params[l]) - lr * delta_w, rtol=1e-5, atol=1e-6)


def test_f_is_drawn_at_the_papers_scale():
    net, params = tiny_network()
    bound = 0.05 * math.sqrt(6 / 3)  # 0.05 · sqrt(6/d_in), d_in = 3
    big = pepita(f_scale=0.05).init(jax.random.key(0), net, params).projection
    small = pepita(f_scale=0.025).init(jax.random.key(0), net, params).projection
    assert np.abs(big).max() <= bound and np.abs(big).max() > 0
    np.testing.assert_allclose(np.asarray(small) * 2, big, rtol=1e-5)
    model = REGISTRY.get("model", "mlp").factory((28, 28), 10, rngs=nnx.Rngs(0), widths=(4,))
    wide_net, wide_params = Network.from_model(model, (28, 28))
    for dist in ("uniform", "normal"):  # the same standard deviation, f_scale · sqrt(2/d_in)
        f = np.asarray(pepita(f_scale=1.0, dist=dist).init(jax.random.key(0), wide_net, wide_params).projection)
        assert f.shape == (784, 10)
        np.testing.assert_allclose(f.std(), math.sqrt(2 / 784), rtol=0.05)
        assert dist == "normal" or np.abs(f).max() <= math.sqrt(6 / 784)


def test_f_is_fixed_across_steps():
    net, params = tiny_network(widths=(4, 5))
    x, y = batch()
    rule = pepita()
    state = rule.init(jax.random.key(0), net, params)

    @jax.jit
    def step(inputs, current):
        _, trace = net.forward(params, inputs)
        signals, current = rule.compute_targets(net, params, trace, y, current)
        return rule.local_update(net, params, trace, signals, current)[1]

    current = step(x + 1.0, step(x, state))  # two steps on different batches
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(current)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("options", [
    {"f_scale": 0}, {"f_scale": -0.1}, {"f_scale": float("nan")}, {"f_scale": float("inf")},
    {"f_scale": True}, {"f_scale": "0.05"}, {"dist": "cauchy"},
])
def test_bad_options_are_refused(options):
    with pytest.raises(NgfError):
        pepita(**options)


def test_bad_options_from_the_command_line_are_refused():
    entry = REGISTRY.get("rule", "pepita")
    from ngf.host.options import bind_options
    with pytest.raises(NgfError, match="f_scale"):
        entry.factory(**bind_options("rule", "pepita", entry.factory, {"f_scale": "-1"}, skip=()))
    with pytest.raises(NgfError, match="valid options: f_scale, dist"):
        bind_options("rule", "pepita", entry.factory, {"scale": "1"}, skip=())


@functools.lru_cache(maxsize=None)
def small_model_step(model_name):
    """A small built-in model, a batch, pass 1's trace, pepita's state and one compiled
    ``params → (signals, updates)`` from that fixed trace, shared by the tests below."""
    model = REGISTRY.get("model", model_name).factory(SHAPE, 3, rngs=nnx.Rngs(0), **MODELS[model_name])
    net, params = Network.from_model(model, SHAPE)
    x = jnp.asarray(np.random.default_rng(1).uniform(size=(5,) + SHAPE), jnp.float32)
    y = jnp.arange(5) % 3
    _, trace = jax.jit(net.forward)(params, x)
    rule = pepita()
    state = rule.init(jax.random.key(0), net, params)

    @jax.jit
    def step(p):
        signals, after = rule.compute_targets(net, p, trace, y, state)
        return signals, rule.local_update(net, p, trace, signals, after)[0]

    return net, params, x, state, step


def has_weights(theta) -> bool:
    return bool(jax.tree.leaves(theta))


@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_every_weight_node_of_a_cnn_and_a_resnet_learns(model_name):
    net, params, x, state, step = small_model_step(model_name)
    signals, updates = step(params)
    assert state.projection.shape == (math.prod(SHAPE), 3)
    assert signals.inputs[0].shape == x.shape  # F e reshaped to the images' [N, H, W, C]
    assert np.abs(np.asarray(signals.inputs[0]) - np.asarray(x)).max() > 0
    for l, (theta, update) in enumerate(zip(params, updates)):
        assert jax.tree.structure(update) == jax.tree.structure(theta)
        leaves = jax.tree.leaves(update)
        assert all(np.all(np.isfinite(u)) for u in leaves)
        if has_weights(theta):  # weightless nodes (resnet's sums) get an empty update
            assert max(float(np.abs(u).max()) for u in leaves) > 0, f"node {l} did not learn"


def descendants(net, k) -> set:
    """The nodes that read node k's output, directly or through others."""
    found = set()
    for c in range(k + 1, net.depth):
        if any(p == k or p in found for p in net.parents(c)):
            found.add(c)
    return found


@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_changing_a_nodes_weights_moves_only_the_nodes_above_it(model_name):
    """Pass 2 reads the forward weights in the forward direction only (the module docstring):
    with pass 1's trace fixed, changing node k moves the updates of the weight nodes downstream of k, no other."""
    net, params, _, _, step = small_model_step(model_name)
    before = step(params)[1]
    for k in [l for l, theta in enumerate(params) if has_weights(theta)]:
        rng = np.random.default_rng(k)  # numpy: no eager JAX program to compile per shape
        noise = lambda a: (3 * np.asarray(a) + 0.1 + rng.normal(size=a.shape)).astype(a.dtype)
        after = step(tuple(jax.tree.map(noise, p) if l == k else p for l, p in enumerate(params)))[1]
        moved = {l for l in range(net.depth) if l != k and has_weights(params[l]) and not all(
            np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before[l]), jax.tree.leaves(after[l])))}
        above = {l for l in descendants(net, k) if has_weights(params[l])}
        assert moved == above, f"changing node {k} moved {sorted(moved)}, not the weight nodes above it"
