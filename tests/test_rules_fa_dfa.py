"""fa and dfa against hand computations on a few units, and their locality (docs/rules.md#fa, #dfa)."""

import jax
import numpy as np
import pytest
from flax import nnx

from ngf.core.errors import NgfError
from ngf.core.network import Network
from ngf.models import mlp
from ngf.plugins.bp import bp
from ngf.plugins.dfa import dfa
from ngf.plugins.fa import fa
from ngf_tiny_mlp import assert_updates, batch, kernel, numpy_forward, output_error, run_rule, tiny_network


@pytest.mark.parametrize("dist", ["normal", "uniform"])
def test_fa_signals_match_hand_computation(dist):
    net, params = tiny_network()
    x, y = batch()
    deltas, updates, state = run_rule(fa(dist=dist), net, params, x, y)
    zs, hs = numpy_forward(params, x)
    e = output_error(hs[-1], y)                                      # δ^L = e
    b2 = kernel(state.feedback[1])
    assert b2.shape == kernel(params[1]).shape and not np.allclose(b2, kernel(params[1]))
    delta1 = (1 - np.tanh(hs[0]) ** 2) * (e @ b2.T)                  # f'(h¹) ⊙ J^T(B, δ) = f'(h¹) ⊙ Bδ
    np.testing.assert_allclose(deltas[1], e, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(deltas[0], delta1, rtol=1e-5, atol=1e-6)
    assert_updates(updates, zs, [delta1, e])


def test_dfa_signals_match_hand_computation():
    net, params = tiny_network(widths=(4, 3))
    x, y = batch()
    deltas, updates, state = run_rule(dfa(), net, params, x, y)
    zs, hs = numpy_forward(params, x)
    e = output_error(hs[-1], y)
    d1, d2 = (np.asarray(d) for d in state.feedback)
    assert d1.shape == (4, 2) and d2.shape == (3, 2) and len(state.feedback) == 2
    expected = [(1 - np.tanh(hs[0]) ** 2) * (e @ d1.T),              # δ^l = f'(h^l) ⊙ D_l e
                (1 - np.tanh(hs[1]) ** 2) * (e @ d2.T), e]
    for got, want in zip(deltas, expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert_updates(updates, zs, expected)


def perturb(params, layers):
    """Random changes to the parameters of ``layers`` (a constant shift would cancel: Σe = 0)."""
    def shift(theta, key):
        return jax.tree.map(lambda a: a + jax.random.normal(key, a.shape), theta)
    keys = jax.random.split(jax.random.key(7), len(params))
    return tuple(shift(p, keys[l]) if l in layers else p for l, p in enumerate(params))


def signals_with(rule, net, params, trace, y):
    state = rule.init(jax.random.key(0), net, params)
    return rule.compute_targets(net, params, trace, y, state)[0]


@pytest.mark.parametrize("layer", [0, 1])
def test_fa_signal_ignores_forward_weights_above(layer):
    net, params = tiny_network(widths=(4, 5))
    x, y = batch()
    _, trace = net.forward(params, x)  # the trace stays fixed
    changed = perturb(params, set(range(layer + 1, net.depth)))
    np.testing.assert_array_equal(signals_with(fa(), net, params, trace, y)[layer],
                                  signals_with(fa(), net, changed, trace, y)[layer])
    # the same change moves backprop's signal, so the check has teeth
    assert not np.allclose(signals_with(bp(), net, params, trace, y)[layer],
                           signals_with(bp(), net, changed, trace, y)[layer])


@pytest.mark.parametrize("layer", [0, 1])
def test_dfa_hidden_signal_ignores_every_other_layer(layer):
    net, params = tiny_network(widths=(4, 5))
    x, y = batch()
    _, trace = net.forward(params, x)
    changed = perturb(params, set(range(net.depth)) - {layer})
    np.testing.assert_array_equal(signals_with(dfa(), net, params, trace, y)[layer],
                                  signals_with(dfa(), net, changed, trace, y)[layer])


def test_feedback_is_fixed_across_steps():
    net, params = tiny_network(widths=(4, 5))
    x, y = batch()
    for rule in (fa(), dfa()):
        state = rule.init(jax.random.key(0), net, params)
        _, trace = net.forward(params, x)
        signals, after = rule.compute_targets(net, params, trace, y, state)
        _, after = rule.local_update(net, params, trace, signals, after)
        for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(after)):
            np.testing.assert_array_equal(a, b)


def test_scale_and_distribution_options():
    net, params = tiny_network()
    small = fa(scale=0.5).init(jax.random.key(0), net, params).feedback[1]
    large = fa(scale=1.0).init(jax.random.key(0), net, params).feedback[1]
    np.testing.assert_allclose(kernel(small) * 2, kernel(large), rtol=1e-6)
    for factory in (fa, dfa):
        with pytest.raises(NgfError):
            factory(dist="cauchy")


def test_dfa_needs_the_input_shape():
    model = mlp(input_shape=(3,), n_classes=2, rngs=nnx.Rngs(0), widths=(4,))
    net, params = Network.from_model(model)
    with pytest.raises(ValueError, match="input_shape"):
        dfa().init(jax.random.key(0), net, params)
