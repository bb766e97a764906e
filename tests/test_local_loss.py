"""local-loss: the pred loss, its gradient for one hidden node's θ and head, and the sim loss by hand
(numpy, on the tiny tanh mlp); the pooling the pred head reads on a feature map; bad options."""

import numpy as np
import pytest

from ngf.core.errors import NgfError
from ngf.plugins.local_loss import local_loss, pool_window, pred_features
from ngf_tiny_mlp import assert_updates, batch, numpy_forward, output_error, run_owned_rule, tiny_network


def softmax(a):
    p = np.exp(a - a.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def similarity(v):
    """Cosine similarity of the rows, each centred on its own mean."""
    c = v - v.mean(1, keepdims=True)
    u = c / (1e-8 + np.sqrt((c ** 2).sum(1, keepdims=True)))
    return np.clip(u @ u.T, -1, 1)


def test_pred_loss_and_its_gradients_match_hand_computation():
    net, params = tiny_network()
    x, y = batch()
    (deltas, heads_grads, value), updates, heads = run_owned_rule(local_loss(loss="pred", head_scale=1.0),
                                                                  net, params, x, y)
    zs, hs = numpy_forward(params, x)
    w, b = np.asarray(heads[0]["pred_w"]), np.asarray(heads[0]["pred_b"])
    assert heads[1] is None and set(heads[0]) == {"pred_w", "pred_b"} and w.shape == (4, 2)
    onehot, n = np.eye(2)[np.asarray(y)], len(y)
    p = softmax(zs[1] @ w + b)
    loss = -np.mean(np.log(p[np.arange(n), np.asarray(y)]))       # CE of the head on z^1
    delta = (1 - zs[1] ** 2) * ((p - onehot) @ w.T)                 # n ∂loss/∂h^1, per example
    np.testing.assert_allclose(value, loss, rtol=1e-5)
    np.testing.assert_allclose(updates.metrics["local_loss"], loss, rtol=1e-5)
    np.testing.assert_allclose(deltas[0], delta, rtol=1e-5, atol=1e-6)
    assert_updates(updates.params, zs, [delta, output_error(hs[-1], y)])  # θ_1 from its loss, the output from e
    np.testing.assert_allclose(updates.rule_params[0]["pred_w"], zs[1].T @ (p - onehot) / n, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(updates.rule_params[0]["pred_b"], (p - onehot).mean(0), rtol=1e-5, atol=1e-6)
    assert updates.rule_params[1] is None


def test_sim_and_predsim_losses_match_hand_computation():
    net, params = tiny_network()
    x, y = batch()
    _, updates, heads = run_owned_rule(local_loss(loss="sim"), net, params, x, y)
    zs, _ = numpy_forward(params, x)
    g = np.asarray(heads[0]["sim_g"])
    assert set(heads[0]) == {"sim_g"} and g.shape == (4, 4)
    s_y = similarity(np.eye(2)[np.asarray(y)])
    np.testing.assert_allclose(s_y, [[1, -1, 1], [-1, 1, -1], [1, -1, 1]], atol=1e-6)
    sim = np.mean((similarity(zs[1] @ g) - s_y) ** 2)
    np.testing.assert_allclose(updates.metrics["local_loss"], sim, rtol=1e-5)
    assert np.any(np.asarray(updates.params[0]["linear"]["kernel"]) != 0)

    _, updates, heads = run_owned_rule(local_loss(loss="predsim", beta=0.7, head_scale=1.0), net, params, x, y)
    w, b, g = (np.asarray(heads[0][k]) for k in ("pred_w", "pred_b", "sim_g"))
    p = softmax(zs[1] @ w + b)
    pred = -np.mean(np.log(p[np.arange(3), np.asarray(y)]))
    sim = np.mean((similarity(zs[1] @ g) - s_y) ** 2)
    np.testing.assert_allclose(updates.metrics["local_loss"], 0.3 * pred + 0.7 * sim, rtol=1e-5)


def test_the_pred_head_reads_a_feature_map_average_pooled():
    assert pool_window((1, 28, 28, 32), 4096) == 4 and pool_window((1, 7, 7, 8), 4096) == 1
    assert pool_window((1, 10), 4) == 1  # a dense output is read as it is
    z = np.arange(2 * 3 * 3 * 2, dtype=np.float32).reshape(2, 3, 3, 2)
    got = np.asarray(pred_features(z, 8))   # 3×3×2 = 18 > 8: a 2×2 window over the map padded to 4×4
    padded = np.pad(z, [(0, 0), (0, 1), (0, 1), (0, 0)])
    want = padded.reshape(2, 2, 2, 2, 2, 2).mean(axis=(2, 4)).reshape(2, -1)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_bad_options_are_refused_in_one_line():
    with pytest.raises(NgfError) as info:
        local_loss(loss="mse")
    assert "pred, sim, predsim" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(NgfError):
        local_loss(beta=1.5)


def test_the_similarity_loss_has_a_finite_gradient_where_an_examples_features_are_all_equal():
    """A dead layer (a row of zeros, as dropout or dead ReLUs make it) gives 0/0 in ‖c‖'s gradient unless
    guarded: the guard keeps the gradient finite and leaves other rows' values as they were."""
    import jax
    import jax.numpy as jnp

    from ngf.plugins.local_loss import similarity
    v = jnp.array([[0.0, 0.0, 0.0], [1.0, -2.0, 0.5], [0.3, 0.1, -0.4]])
    grad = jax.grad(lambda v: jnp.sum(similarity(v) ** 2))(v)
    assert bool(jnp.all(jnp.isfinite(grad)))
    c = v[1:] - v[1:].mean(axis=1, keepdims=True)
    unit = c / (1e-8 + jnp.linalg.norm(c, axis=1, keepdims=True))
    assert jnp.allclose(similarity(v)[1:, 1:], unit @ unit.T, atol=1e-6)
