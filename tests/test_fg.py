"""fg: weight-perturbed forward gradients (d = ∇L · v, g = d v) and activity-perturbed forward gradients
with local heads (d_n = ∂ℓ_n/∂h_n · ũ_n, δ_n = d_n ũ_n), by hand in numpy on tiny mlps, with the tangents
drawn again from the same key; K tangents averaged; groups; bad options."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.flatten_util import ravel_pytree

from ngf.core.errors import NgfError
from ngf.core.network import Network
from ngf.core.rule import call
from ngf.models import mlp
from ngf.plugins.fg import fg
from ngf_tiny_mlp import assert_updates, batch, bias, kernel, numpy_forward, output_error, tiny_network

KEY = 7


def softmax(a):
    p = np.exp(a - a.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def one_step(rule, net, params, x, y):
    """compute_targets → local_update as the engine calls them, the step key ``KEY``: (Updates, heads)."""
    heads = rule.init_params(jax.random.key(3), net, params) if rule.init_params else ()

    @jax.jit
    def step(params, heads):
        trace = net.forward(params, x)[1] if rule.uses_trace else None
        extras = {"rule_params": heads, "key": jax.random.key(KEY), "x": x}
        signals, state = call(rule.compute_targets, net, params, trace, y, (), extras=extras)
        return call(rule.local_update, net, params, trace, signals, state, extras=extras)[0]

    return step(params, heads), heads


def numpy_gradient(params, x, y):
    """∇θ of the batch-mean cross-entropy of the tanh mlp, by hand (the exact gradient Baydin's d reads)."""
    zs, hs = numpy_forward(params, x)
    delta, grads = output_error(hs[-1], y) / len(y), []
    for l in reversed(range(len(params))):
        grads.append({"b": delta.sum(0), "w": zs[l].T @ delta})
        delta = (delta @ kernel(params[l]).T) * (1 - zs[l] ** 2) if l else None
    return grads[::-1]


def flat_like_params(grads):
    """The per-node {b, w} arrays in ``ravel_pytree``'s order of the parameters (bias, then kernel, per node)."""
    return np.concatenate([np.concatenate([g["b"].ravel(), g["w"].ravel()]) for g in grads])


@pytest.mark.parametrize("k", [1, 3])
def test_weights_mode_is_d_times_v_with_v_from_the_key(k):
    net, params = tiny_network()
    x, y = batch()
    updates, _ = one_step(fg(mode="weights", tangents=k), net, params, x, y)
    flat, unravel = ravel_pytree(params)
    v = np.asarray(jax.random.normal(jax.random.key(KEY), (k,) + flat.shape))  # the same draw
    gradient = flat_like_params(numpy_gradient(params, x, y))
    d = v @ gradient                                                  # d_k = ∇L · v_k
    want = unravel(jnp.asarray((d[:, None] * v).mean(0)))             # g = mean_k d_k v_k
    for got, theta in zip(updates.params, want):
        np.testing.assert_allclose(kernel(got), kernel(theta), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(bias(got), bias(theta), rtol=1e-4, atol=1e-6)
    zs, hs = numpy_forward(params, x)
    loss = -np.mean(np.log(softmax(hs[-1])[np.arange(3), np.asarray(y)]))
    np.testing.assert_allclose(updates.metrics["batch_loss"], loss, rtol=1e-5)
    np.testing.assert_allclose(updates.metrics["grad_norm"], np.sqrt(np.mean(d ** 2)), rtol=1e-4)
    np.testing.assert_allclose(updates.logits, hs[-1], rtol=1e-5, atol=1e-6)


def layer_norm(z):
    """LN over the units and its Jacobian–vector product, by hand."""
    mu, sigma = z.mean(1, keepdims=True), np.sqrt(z.var(1, keepdims=True) + 1e-5)
    y = (z - mu) / sigma
    jvp = lambda t: (t - t.mean(1, keepdims=True) - y * (y * t).mean(1, keepdims=True)) / sigma
    return y, jvp


def hand_activity(params, heads, x, y, u, slope, norm, groups=1):
    """Node 1's δ by hand: d_{k,n,g} = Σ_{i∈g} c_{n,i} q̇_{k,n,i}, c = W(p − onehot), q̇ = LN'(f'(h) ⊙ ũ);
    δ_n = mean_k d_{k,n,g(i)} ũ_{k,n,i}; and the head's loss and exact gradients."""
    zs, hs = numpy_forward(params, x) if slope is None else relu_forward(params, x)
    fprime = (1 - zs[1] ** 2) if slope is None else (hs[0] > 0).astype(float)
    w, b = np.asarray(heads[0]["w"]), np.asarray(heads[0]["b"])
    q, q_jvp = layer_norm(zs[1]) if norm else (zs[1], lambda t: t)
    p, onehot = softmax(q @ w + b), np.eye(2)[np.asarray(y)]
    c = (p - onehot) @ w.T
    u = u * (fprime != 0)                                            # ũ = m ⊙ u
    group = np.arange(u.shape[-1]) * groups // u.shape[-1]
    delta = np.zeros_like(zs[1])
    for uk in u:
        prod = c * q_jvp(fprime * uk)                                  # c ⊙ q̇ (f'(h) ⊙ ũ: the jvp through f)
        d = np.stack([prod[:, group == g].sum(1) for g in range(groups)], 1)
        delta += d[:, group] * uk / len(u)
    loss = -np.mean(np.log(p[np.arange(len(y)), np.asarray(y)]))
    return delta, loss, q.T @ (p - onehot) / len(y), (p - onehot).mean(0)


def relu_forward(params, x):
    zs, hs, z = [np.asarray(x)], [], np.asarray(x)
    for l, theta in enumerate(params):
        hs.append(z @ kernel(theta) + bias(theta))
        z = np.maximum(hs[-1], 0) if l < len(params) - 1 else hs[-1]
        zs.append(z)
    return zs, hs


def relu_network():
    model = mlp(input_shape=(3,), n_classes=2, rngs=nnx.Rngs(1), widths=(6,), activation="relu")
    return Network.from_model(model, (3,))


@pytest.mark.parametrize("norm, k, groups", [(False, 1, 1), (True, 1, 1), (True, 3, 1), (False, 2, 2)])
def test_activity_mode_matches_hand_computation(norm, k, groups):
    net, params = tiny_network()
    x, y = batch()
    updates, heads = one_step(fg(tangents=k, head_norm=norm, groups=groups), net, params, x, y)
    u = np.asarray(jax.random.normal(jax.random.key(KEY), (k, 3, 4)))  # the same draw (node 1's h: 4 units)
    delta, loss, dw, db = hand_activity(params, heads, x, y, u, None, norm, groups)
    zs, hs = numpy_forward(params, x)
    assert heads[1] is None and np.asarray(heads[0]["w"]).shape == (4, 2)
    assert_updates(updates.params, zs, [delta, output_error(hs[-1], y)])  # θ_1 from its head, the output from e
    np.testing.assert_allclose(updates.metrics["local_loss"], loss, rtol=1e-5)
    np.testing.assert_allclose(updates.rule_params[0]["w"], dw, rtol=1e-4, atol=1e-6)  # the head's exact gradient
    np.testing.assert_allclose(updates.rule_params[0]["b"], db, rtol=1e-4, atol=1e-6)


def test_relu_units_that_pass_no_gradient_are_not_perturbed():
    net, params = relu_network()
    x, y = batch()
    updates, heads = one_step(fg(head_norm=False, groups=1), net, params, x, y)
    u = np.asarray(jax.random.normal(jax.random.key(KEY), (1, 3, 6)))
    delta, *_ = hand_activity(params, heads, x, y, u, True, False)
    zs, hs = relu_forward(params, x)
    assert np.any(hs[0] <= 0) and np.all(delta[hs[0] <= 0] == 0)
    assert_updates(updates.params, zs, [delta, output_error(hs[-1], y)])


def test_out_perturbs_the_output_and_pulls_through_the_activation():
    net, params = tiny_network()
    x, y = batch()
    updates, heads = one_step(fg(perturb="out", head_norm=False, groups=1), net, params, x, y)
    u = np.asarray(jax.random.normal(jax.random.key(KEY), (3, 4)))
    zs, hs = numpy_forward(params, x)
    w, b = np.asarray(heads[0]["w"]), np.asarray(heads[0]["b"])
    c = (softmax(zs[1] @ w + b) - np.eye(2)[np.asarray(y)]) @ w.T   # ∂ℓ_n/∂z_n
    delta = (1 - zs[1] ** 2) * ((c * u).sum(1, keepdims=True) * u)  # f'(h) ⊙ (∂ℓ/∂z · u) u
    assert_updates(updates.params, zs, [delta, output_error(hs[-1], y)])


def test_heads_start_at_the_authors_scale():
    net, params = tiny_network(widths=(400,))
    heads = fg(head_scale=2.0).init_params(jax.random.key(0), net, params)
    np.testing.assert_allclose(np.std(np.asarray(heads[0]["w"])), 2 * 0.1, rtol=0.1)  # min(2/√400, 0.1) = 0.1
    assert not np.any(np.asarray(fg(head_scale=0.0).init_params(jax.random.key(0), net, params)[0]["w"]))


@pytest.mark.parametrize("opts, words", [
    ({"mode": "nodes"}, "activity, weights"), ({"perturb": "mid"}, "pre, out"), ({"tangents": 0}, "tangents"),
    ({"groups": 0}, "groups"), ({"head_scale": -1.0}, "head_scale"), ({"head_lr": -1.0}, "head_lr"),
    ({"pool_to": -2}, "pool_to"), ({"head_norm": "maybe"}, "head_norm")])
def test_bad_options_are_refused_in_one_line(opts, words):
    with pytest.raises(NgfError) as info:
        fg(**opts)
    assert words in str(info.value) and "fg" in str(info.value) and "\n" not in str(info.value)
