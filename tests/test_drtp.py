"""drtp against a hand computation: dfa's direct signals with the label in place of the error (issue 14)."""

import jax
import numpy as np
import pytest

from ngf.core.errors import NgfError
from ngf.plugins.drtp import drtp
from ngf_tiny_mlp import assert_updates, batch, numpy_forward, output_error, run_rule, tiny_network


def test_drtp_signals_match_hand_computation():
    net, params = tiny_network(widths=(4, 3))
    x, y = batch()
    deltas, updates, state = run_rule(drtp(), net, params, x, y)
    zs, hs = numpy_forward(params, x)
    e = output_error(hs[-1], y)
    target = -np.eye(2)[np.asarray(y)]  # −onehot(y): known before the output is computed
    d1, d2 = (np.asarray(d) for d in state.feedback)
    expected = [(1 - np.tanh(hs[0]) ** 2) * (target @ d1.T),  # δ^l = f'(h^l) ⊙ D_l(−onehot(y))
                (1 - np.tanh(hs[1]) ** 2) * (target @ d2.T), e]  # the output node learns from e
    for got, want in zip(deltas, expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert_updates(updates, zs, expected)


def test_hidden_signals_do_not_depend_on_the_output():
    """No error travels back: changing the output node's weights leaves every hidden signal alone."""
    net, params = tiny_network(widths=(4, 3))
    x, y = batch()
    before = run_rule(drtp(), net, params, x, y)[0]
    shifted = params[:-1] + (jax.tree.map(lambda a: a + 1.0 + a ** 2, params[-1]),)
    after = run_rule(drtp(), net, shifted, x, y)[0]
    for l in range(2):
        np.testing.assert_allclose(before[l], after[l], rtol=1e-6)
    assert not np.allclose(before[-1], after[-1])


def test_bad_options_are_refused():
    with pytest.raises(NgfError, match="drtp option scale"):
        drtp(scale=0)
    with pytest.raises(NgfError, match="unknown distribution"):
        drtp(dist="cauchy")
