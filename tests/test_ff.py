"""ff: the node losses, their gradients, peer normalisation, the output node, both predictions and the
head by hand (numpy, on a tiny tanh mlp of two hidden nodes and two classes, where the one wrong label
is known); the negative labels; the models and options refused (docs/rules.md#ff)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ngf.core.errors import NgfError
from ngf.core.network import Network
from ngf.core.rule import as_updates, call, predict
from ngf.models import mlp
from ngf.models.cnn import cnn
from ngf.plugins.ff import ff, negative_labels
from ngf_tiny_mlp import batch, bias, kernel, output_error, tiny_network


def norm(u):
    return u / (np.sqrt(np.mean(u ** 2, axis=1, keepdims=True)) + 1e-8)


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def embedded(x, code):
    x = np.array(x)
    x[:, :2] = code
    return x


def numpy_passes(params, x):
    """(normalised inputs, outputs) of the two hidden tanh nodes, and the output node's normalised input."""
    us, zs, z = [], [], x
    for theta in params[:-1]:
        us.append(norm(z))
        z = np.tanh(us[-1] @ kernel(theta) + bias(theta))
        zs.append(z)
    return us, zs, norm(z)


def one_step(rule, net, params, x, y, key=3, rule_params=None):
    """One jitted step as the engine calls a rule with its own passes: (Updates, state after)."""
    @jax.jit
    def step(params, rule_params):
        state = rule.init(jax.random.key(key), net, params)
        extras = {"x": x, "key": jax.random.key(key + 1), "rule_params": rule_params}
        signals, state = call(rule.compute_targets, net, params, None, y, state, extras=extras)
        updates, state = call(rule.local_update, net, params, None, signals, state, extras=extras)
        return as_updates(rule, updates), state

    return step(params, rule_params)


def by_hand(params, x, y, theta, full, peer=0.0):
    """Per-node kernel and bias gradients of loss_l (+ the peer term), the output node's, and the goodness."""
    onehot = np.eye(2)[np.asarray(y)]
    pos, neg = (numpy_passes(params, embedded(x, code)) for code in (onehot, 1 - onehot))  # ỹ = 1 − y
    n, grads, goods = len(x), [], []
    for l, theta_l in enumerate(params[:-1]):
        units, (u_p, z_p), (u_n, z_n) = pos[1][l].shape[1], (pos[0][l], pos[1][l]), (neg[0][l], neg[1][l])
        g_p, g_n, t = (z_p ** 2).sum(1), (z_n ** 2).sum(1), theta * units
        slope = (lambda z: 1.0) if full else (lambda z: 1 - z ** 2)
        d_p = 0.5 / n * (-sigmoid(t - g_p))[:, None] * 2 * z_p * slope(z_p)   # ∂loss_l/∂h⁺
        d_n = 0.5 / n * sigmoid(g_n - t)[:, None] * 2 * z_n * slope(z_n)       # ∂loss_l/∂h⁻
        if peer:
            m = 0.9 * 0.5 + 0.1 * z_p.mean(0)
            d_p = d_p + peer * (2 / units) * (m - m.mean()) * 0.1 / n * slope(z_p)
        grads.append((u_p.T @ d_p + u_n.T @ d_n, d_p.sum(0) + d_n.sum(0)))
        goods.append((g_p.mean(), g_n.mean()))
    _, neutral, top = numpy_passes(params, embedded(x, np.full((n, 2), 0.5)))
    e = output_error(top @ kernel(params[-1]) + bias(params[-1]), y) / n
    grads.append((top.T @ e, e.sum(0)))
    return grads, np.array(goods), neutral


@pytest.mark.parametrize("full", [True, False])
def test_node_gradients_and_goodness_match_hand_computation(full):
    net, params = tiny_network(widths=(4, 3))
    x, y = batch()
    updates, _ = one_step(ff(theta=0.3, peer=0.0, activation_grad="full" if full else "exact"), net, params, x, y)
    grads, goods, _ = by_hand(params, x, y, 0.3, full)
    for l, (w, b) in enumerate(grads):
        np.testing.assert_allclose(kernel(updates.params[l]), w, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(bias(updates.params[l]), b, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(updates.metrics["goodness_pos"], goods[:, 0].mean(), rtol=1e-5)
    np.testing.assert_allclose(updates.metrics["goodness_neg"], goods[:, 1].mean(), rtol=1e-5)


def test_peer_normalisation_adds_its_gradient_and_moves_the_running_means():
    net, params = tiny_network(widths=(4, 3))
    x, y = batch()
    updates, means = one_step(ff(theta=0.3, peer=0.5), net, params, x, y)
    grads, _, _ = by_hand(params, x, y, 0.3, True, peer=0.5)
    for l, (w, _) in enumerate(grads):
        np.testing.assert_allclose(kernel(updates.params[l]), w, rtol=1e-4, atol=1e-6)
    onehot = np.eye(2)[np.asarray(y)]
    _, z_pos, _ = numpy_passes(params, embedded(x, onehot))
    np.testing.assert_allclose(means[1], 0.9 * 0.5 + 0.1 * z_pos[1].mean(0), rtol=1e-5)
    assert means[2] is None


def test_goodness_prediction_sums_the_counted_nodes_over_labels():
    net, params = tiny_network(widths=(4, 3))
    x, _ = batch()
    for count_from, counted in ((1, [1]), (0, [0, 1])):
        rule = ff(count_from=count_from)
        scores = predict(rule, net, params, x, rule.init(jax.random.key(0), net, params))
        want = [sum((numpy_passes(params, embedded(x, np.eye(2)[c]))[1][l] ** 2).sum(1) for l in counted)
                for c in range(2)]
        np.testing.assert_allclose(scores, np.stack(want, 1), rtol=1e-5)


def test_the_head_reads_the_normalised_neutral_outputs_and_learns_by_cross_entropy():
    net, params = tiny_network(widths=(4, 3))
    x, y = batch()
    rule = ff(predict="head", count_from=0)
    head = rule.init_params(jax.random.key(0), net, params)
    assert head.shape == (7, 2) and not np.any(head)                    # 4 + 3 features, zeros at start
    head = jnp.asarray(np.random.default_rng(0).normal(size=(7, 2)), jnp.float32)
    updates, _ = one_step(rule, net, params, x, y, rule_params=head)
    _, _, neutral = by_hand(params, x, y, 1.0, True)
    features = np.concatenate([norm(z) for z in neutral], 1)
    logits = features @ np.asarray(head)
    np.testing.assert_allclose(updates.logits, logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(updates.rule_params, features.T @ output_error(logits, y) / 3, rtol=1e-4, atol=1e-6)
    scores = predict(rule, net, params, x, rule.init(jax.random.key(0), net, params), head)
    np.testing.assert_allclose(scores, logits, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("negatives", ["random", "hard"])
def test_negative_labels_are_never_the_true_one_and_reach_every_wrong_label(negatives):
    net, params = Network.from_model(mlp((6,), 4, rngs=nnx.Rngs(0), widths=(5, 5)), (6,))
    x = jax.random.uniform(jax.random.key(1), (400, 6))
    y = jax.random.randint(jax.random.key(2), (400,), 0, 4)
    wrong = np.asarray(negative_labels(jax.random.key(3), net, params, x, y, 4, negatives, "sum", (1,)))
    y = np.asarray(y)
    assert not np.any(wrong == y)
    if negatives == "random":  # uniform over the wrong labels
        for c in range(4):
            assert set(wrong[y == c]) == set(range(4)) - {c}
    else:  # ∝ exp(goodness): mostly the wrong label the network scores highest
        scores = np.asarray(ff().predict(net, params, x, None)) - 1e9 * np.eye(4)[y]
        assert np.mean(wrong == scores.argmax(1)) > 0.5


def test_models_ff_does_not_apply_to_are_refused_in_one_line():
    net, params = Network.from_model(cnn((8, 8, 1), 3, rngs=nnx.Rngs(0), channels=(2,), widths=(4,)), (8, 8, 1))
    with pytest.raises(NgfError, match="feature map .* use a model whose first node is dense") as info:
        ff().init(jax.random.key(0), net, params)
    assert "\n" not in str(info.value)
    net, params = tiny_network(widths=(4,))
    ff().init(jax.random.key(0), net, params)  # one hidden node: it counts
    with pytest.raises(NgfError, match="count_from=1 leaves none"):
        ff(count_from=1).init(jax.random.key(0), net, params)
    net, params = tiny_network(widths=())
    with pytest.raises(NgfError, match="no hidden node with weights"):
        ff().init(jax.random.key(0), net, params)
    net, params = Network.from_model(mlp((2,), 2, rngs=nnx.Rngs(0), widths=(3, 3)), (2,))
    with pytest.raises(NgfError, match="too few to carry the 2 label inputs"):
        ff().init(jax.random.key(0), net, params)


@pytest.mark.parametrize("options, message", [
    ({"goodness": "max"}, "goodness: unknown value 'max'; valid: sum, mean"),
    ({"negatives": "all"}, "valid: random, hard"), ({"predict": "softmax"}, "valid: goodness, head"),
    ({"activation_grad": "none"}, "valid: full, exact"), ({"theta": -1}, "theta"), ({"count_from": 0.5}, "count_from"),
    ({"peer": float("nan")}, "peer"), ({"head_lr": -2}, "head_lr")])
def test_bad_options_are_refused_in_one_line(options, message):
    with pytest.raises(NgfError, match=message) as info:
        ff(**options)
    assert "\n" not in str(info.value) and str(info.value).startswith("ff option")
