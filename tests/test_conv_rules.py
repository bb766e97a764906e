"""Every registered rule on convolutional and residual models, and rule equations through a convolution.

The equation tests build a convolution's dense matrix M(K) by applying it to basis
vectors, so that J^T(K, δ) = M(K)ᵀδ and the kernel update is Σ_k (δ·M(E_k) z) E_k,
and compare the rules' vjp-based signals and updates with that dense computation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from ngf.data.splits import DataSplits
from ngf.core.engine import Engine, choose_steps_per_call, rule_pass
from ngf.core.network import Network, output_error
from ngf.host.registry import load_registry
from ngf.models.cnn import cnn
from ngf.models.conv import Conv, MaxPool
from ngf.models.layers import Dense, Sequential
from ngf.models.mlp import mlp
from ngf.models.resnet import resnet

SHAPE, CLASSES, N_TRAIN, BATCH = (12, 12, 1), 3, 16, 8

TINY_MODELS = {
    "mlp": lambda rngs: mlp(SHAPE, CLASSES, rngs=rngs, widths=(8,)),
    "cnn": lambda rngs: cnn(SHAPE, CLASSES, rngs=rngs, channels=(2, 3), widths=(8,), kernel=3),
    "resnet": lambda rngs: resnet(SHAPE, CLASSES, rngs=rngs, stem=2, widths=(2, 3), blocks=(1,)),
}
GLOBAL_RESNET = lambda rngs: resnet(SHAPE, CLASSES, rngs=rngs, stem=2, widths=(2, 3), blocks=(1,), head="global")
REGISTRY = load_registry()


def random_splits(seed: int = 0) -> DataSplits:
    """Random uint8 images and labels, shaped like a tiny image dataset."""
    rng = np.random.default_rng(seed)
    images = lambda n: rng.integers(0, 256, (n,) + SHAPE, dtype=np.uint8)
    labels = lambda n: rng.integers(0, CLASSES, n).astype(np.int32)
    return DataSplits(images(N_TRAIN), labels(N_TRAIN), images(BATCH), labels(BATCH), CLASSES)


def arr(variable) -> np.ndarray:
    """The array inside an nnx variable (or an array itself)."""
    return np.asarray(jax.tree.leaves(variable)[0])


def shapes(tree):
    """Shape and dtype of every leaf."""
    return jax.tree.map(lambda a: (a.shape, a.dtype), tree)


#: one rule of each kind the engine treats apart: plain, a state and apply_changes, trainable parameters
ONE_STEP_RULES = {"bp": "stateless", "kp": "a state and apply_changes", "dtp": "trainable rule parameters"}


@pytest.mark.parametrize("model_name", ["cnn", "resnet"])
@pytest.mark.parametrize("rule_name", sorted(ONE_STEP_RULES))
def test_one_step_per_call_compiles_once_and_learns_on_convolutional_models(rule_name, model_name):
    """The engine's one-step-per-call path (convolutional models' default on a CPU): jit works, values stay
    finite, one compile over two epochs, something is learned. Every rule's contract on every model, and
    one compile of the scan path, are ngf.testing's checks in tests/test_contract.py."""
    model = TINY_MODELS[model_name](nnx.Rngs(0))
    net, params = Network.from_model(model, SHAPE)
    rule = REGISTRY.get("rule", rule_name).factory()
    data = random_splits()
    x = jnp.asarray(data.x_train[:BATCH], jnp.float32) / 255.0
    engine = Engine(net, rule, optax.adam(1e-2), BATCH, N_TRAIN, choose_steps_per_call(model, N_TRAIN // BATCH),
                    rule_optimizer=optax.adam(1e-2 * rule.params_lr) if rule.init_params else None)
    assert engine.steps_per_call == 1
    state = engine.init(jax.random.key(1), params)

    def updates_of(s, inputs, y):  # the engine's forward → compute_targets → local_update
        return rule_pass(net, rule, s, inputs, y)[0].params

    assert shapes(jax.eval_shape(updates_of, state, x, data.y_train[:BATCH])) == shapes(params)

    before = jax.tree.map(np.array, state.params)
    for epoch in range(2):
        state, metrics = engine.train_epoch(state, data.x_train, data.y_train, jax.random.key(epoch))
    assert engine.train_call._cache_size() == 1
    assert np.isfinite(metrics["train_loss"])
    after = jax.tree.leaves(state.params)
    assert all(np.all(np.isfinite(a)) for a in after)
    assert any(not np.allclose(a, b) for a, b in zip(after, jax.tree.leaves(before))), "nothing was learned"


# ---------------------------------------------------------------- equations through a convolution

IMG = (6, 6, 2)


def equation_net():
    """conv(2→3, 3×3, SAME) + tanh → conv(3→2, 3×3, VALID) + tanh → dense∘max_pool → 3 logits."""
    rngs = nnx.Rngs(3)
    layers = [Conv(2, 3, 3, jnp.tanh, padding="SAME", rngs=rngs),
              Conv(3, 2, 3, jnp.tanh, padding="VALID", rngs=rngs),
              Dense(2 * 2 * 2, CLASSES, pool=MaxPool(2), rngs=rngs)]
    return Network.from_model(Sequential(layers), IMG)


def conv_matrix(kernel, in_shape, padding):
    """M(K): the dense matrix of a bias-free convolution, built column by column from basis images."""
    n_in = int(np.prod(in_shape))
    basis = jnp.eye(n_in, dtype=jnp.float32).reshape((n_in,) + in_shape)
    out = jax.lax.conv_general_dilated(basis, kernel, (1, 1), padding,
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return np.asarray(out.reshape(n_in, -1)).T  # [n_out, n_in]


def pool_dense(v):
    """2×2 max pooling in numpy, and the 0/1 matrix P with pool(v) = P·flat(v) (one example)."""
    h, w, c = v.shape
    out, P = np.zeros((h // 2, w // 2, c)), np.zeros((h // 2 * w // 2 * c, h * w * c))
    for i in range(h // 2):
        for j in range(w // 2):
            for k in range(c):
                window = v[2 * i:2 * i + 2, 2 * j:2 * j + 2, k]
                a, b = np.unravel_index(np.argmax(window), (2, 2))
                out[i, j, k] = window[a, b]
                P[np.ravel_multi_index((i, j, k), out.shape), np.ravel_multi_index((2 * i + a, 2 * j + b, k), v.shape)] = 1
    return out, P


def kernel_update(delta, z, kernel_shape, in_shape, padding):
    """Σ_n δ_n · M(E_k) z_n / N for every basis kernel E_k: the dense form of vjp_θ conv."""
    update = np.zeros(int(np.prod(kernel_shape)))
    for k in range(update.size):
        basis = np.zeros(update.size, np.float32)
        basis[k] = 1
        M = conv_matrix(jnp.asarray(basis.reshape(kernel_shape)), in_shape, padding)
        update[k] = np.mean([d.ravel() @ M @ x.ravel() for d, x in zip(delta, z)])
    return update.reshape(kernel_shape)


def dense_signals(rule_name, trace, labels, feedback, beta):
    """δ^1, δ^2 of fa or lra on ``equation_net``, from dense matrices and explicit pooling (docs/rules.md#rules)."""
    e = np.asarray(output_error(trace[-1].pre, labels))
    back3 = e @ arr(feedback[2]["linear"]["kernel"]).T  # B_3ᵀe, before the pooling's transpose
    M2 = conv_matrix(arr(feedback[1]["conv"]["kernel"]), IMG[:2] + (3,), "VALID")  # M(B_2)
    h1, h2, z1 = (np.asarray(a) for a in (trace[0].pre, trace[1].pre, trace[0].out))
    dtanh = lambda h: 1 - np.tanh(h) ** 2
    d1, d2 = [], []
    for n in range(len(labels)):
        _, P = pool_dense(np.tanh(h2[n]))
        j3 = P.T @ back3[n]  # J_3^T(B_3, e) = Pᵀ B_3ᵀ e: a_3 = dense∘pool, unpooled at the max positions
        if rule_name == "fa":  # δ^{l-1} = f'(h^{l-1}) ⊙ J_l^T(B_l, δ^l)
            d2n = dtanh(h2[n]).ravel() * j3
            d1n = dtanh(h1[n]).ravel() * (M2.T @ d2n)
        else:  # lra: h̃ = h − β·J^T, y = f(h̃), δ = f'(h) ⊙ (z − y)
            h2_target = h2[n].ravel() - beta * j3
            d2n = dtanh(h2[n]).ravel() * (np.tanh(h2[n]).ravel() - np.tanh(h2_target))
            h1_target = h1[n].ravel() - beta * (M2.T @ d2n)
            d1n = dtanh(h1[n]).ravel() * (z1[n].ravel() - np.tanh(h1_target))
        d1.append(d1n.reshape(h1[n].shape))
        d2.append(d2n.reshape(h2[n].shape))
    return np.stack(d1), np.stack(d2)


@pytest.mark.parametrize("rule_name", ["fa", "lra"])
def test_rule_equations_through_a_convolution(rule_name):
    """Signals and kernel updates of fa and lra equal their dense-matrix form on a conv net."""
    if rule_name not in REGISTRY.rules:
        pytest.skip(f"{rule_name} is not registered")
    net, params = equation_net()
    rule = REGISTRY.get("rule", rule_name).factory()
    state = rule.init(jax.random.key(0), net, params)
    x = jax.random.normal(jax.random.key(1), (3,) + IMG)
    labels = jnp.array([0, 2, 1])

    @jax.jit
    def signals_and_updates(params, state):
        _, trace = net.forward(params, x)
        deltas, state = rule.compute_targets(net, params, trace, labels, state)
        return trace, deltas, rule.local_update(net, params, trace, deltas, state)[0]

    trace, deltas, updates = signals_and_updates(params, state)
    d1, d2 = dense_signals(rule_name, trace, labels, state.feedback, beta=0.1)
    np.testing.assert_allclose(deltas[1], d2, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(deltas[0], d1, rtol=1e-4, atol=1e-6)
    for l, (delta, in_shape, padding) in enumerate([(d1, IMG, "SAME"), (d2, IMG[:2] + (3,), "VALID")]):
        kernel = arr(updates[l]["conv"]["kernel"])
        expected = kernel_update(delta, np.asarray(trace[l].inputs), kernel.shape, in_shape, padding)
        np.testing.assert_allclose(kernel, expected, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(arr(updates[l]["conv"]["bias"]), delta.sum(axis=(1, 2)).mean(0), rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- locality on cnn and resnet


def perturbed_above(params, l: int, key):
    """The parameters with every layer above l (indices > l) replaced by random values."""
    keys = jax.random.split(key, len(params))
    return tuple(p if i <= l else jax.tree.map(lambda a, k=keys[i]: jax.random.normal(k, a.shape, a.dtype), p)
                 for i, p in enumerate(params))


@pytest.mark.parametrize("model_name", ["cnn", "resnet", "resnet-global"])
@pytest.mark.parametrize("rule_name", ["lra", "fa", "bp"])
def test_signals_ignore_forward_weights_above(rule_name, model_name):
    """lra and fa: with the trace fixed, δ^l does not change when layers above l change; bp's does."""
    if rule_name not in REGISTRY.rules:
        pytest.skip(f"{rule_name} is not registered")
    factory = GLOBAL_RESNET if model_name == "resnet-global" else TINY_MODELS[model_name]
    net, params = Network.from_model(factory(nnx.Rngs(0)), SHAPE)
    rule = REGISTRY.get("rule", rule_name).factory()
    state = rule.init(jax.random.key(0), net, params)
    x = jnp.asarray(random_splits().x_train[:4], jnp.float32) / 255.0
    labels = jnp.array([0, 1, 2, 1])
    _, trace = net.forward(params, x)  # fixed: computed once with the original weights
    signals = jax.jit(lambda p: rule.compute_targets(net, p, trace, labels, state)[0])
    reference = signals(params)
    for l in range(net.depth - 1):
        moved = signals(perturbed_above(params, l, jax.random.key(l + 10)))
        same = np.allclose(moved[l], reference[l], rtol=1e-6, atol=1e-7)
        assert same == (rule_name != "bp"), f"layer {l}: signal {'changed' if not same else 'did not change'}"


def test_dfa_delivers_where_the_next_layer_reads():
    """dfa: D_l e goes to p_{l+1}(z^l); through a pooling that is the max positions of z^l (docs/rules.md#rules)."""
    if "dfa" not in REGISTRY.rules:
        pytest.skip("dfa is not registered")
    net, params = equation_net()
    rule = REGISTRY.get("rule", "dfa").factory()
    state = rule.init(jax.random.key(0), net, params)
    x = jax.random.normal(jax.random.key(1), (3,) + IMG)
    labels = jnp.array([0, 2, 1])
    _, trace = net.forward(params, x)
    deltas, _ = jax.jit(lambda p: rule.compute_targets(net, p, trace, labels, state))(params)
    assert state.feedback[1].shape == (2 * 2 * 2, CLASSES)  # the pooled 2×2×2, not the 4×4×2 of z^2
    e = np.asarray(output_error(trace[-1].pre, labels))
    h2 = np.asarray(trace[1].pre)
    for n in range(len(labels)):
        _, P = pool_dense(np.tanh(h2[n]))
        expected = (1 - np.tanh(h2[n]) ** 2).ravel() * (P.T @ (arr(state.feedback[1]) @ e[n]))
        np.testing.assert_allclose(np.asarray(deltas[1][n]).ravel(), expected, rtol=1e-4, atol=1e-6)


def test_only_a_callable_pool_is_a_layers_pooling():
    """A layer's ``pool`` counts only when callable (a pool *size* is not a pooling)."""
    rngs = nnx.Rngs(0)
    first, second = Dense(4, 3, jnp.tanh, rngs=rngs), Dense(3, 2, pool=MaxPool(2), rngs=rngs)
    first.pool = 2  # an integer attribute that happens to share the name
    net, _ = Network.from_model(Sequential([first, second]), (4,))
    assert net.pools == (None, MaxPool(2))
