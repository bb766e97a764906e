"""dkp: direct signals through the learned B_l and B's gradient by hand, the step the run's optimiser takes
on B (params_lr × its lr, B's own decay, not the run's weight decay), and bad options (docs/rules.md#dkp)."""

import jax
import numpy as np
import pytest

from ngf.core.engine import Engine, make_train_step
from ngf.core.errors import NgfError
from ngf.plugins.dkp import dkp
from ngf.runs.config import RunConfig, make_optimizer, make_rule_optimizer
from ngf.plugins.dfa import direct_feedback
from ngf_tiny_mlp import assert_updates, batch, numpy_forward, output_error, run_owned_rule, tiny_network

LR, SCALE, DECAY = 0.05, 0.5, 0.01


def by_hand(params, x, y, feedback, decay):
    """δ^l = f'(h^l) ⊙ B_l e, δ^L = e, and ∇B_l = z^lᵀ e / batch + λ_B B_l for the tanh mlp, in numpy."""
    zs, hs = numpy_forward(params, x)
    e = output_error(hs[-1], y)
    bs = [np.asarray(b) for b in feedback]
    deltas = [(1 - np.tanh(hs[l]) ** 2) * (e @ b.T) for l, b in enumerate(bs)] + [e]
    grads = [zs[l + 1].T @ e / len(e) + decay * b for l, b in enumerate(bs)]
    return zs, deltas, grads


def run_dkp(rule, net, params, x, y, key=3):
    """One jitted step of ``rule`` called as the engine calls it, B drawn from ``key``: (signals, Updates, B)."""
    return run_owned_rule(rule, net, params, x, y, key)


def test_signals_and_b_gradient_match_hand_computation():
    net, params = tiny_network(widths=(4, 3))
    x, y = batch()
    deltas, updates, feedback = run_dkp(dkp(decay=DECAY), net, params, x, y)
    assert [np.shape(b) for b in feedback] == [(4, 2), (3, 2)]  # one B_l per hidden node, none at the output
    zs, want, grads = by_hand(params, x, y, feedback, DECAY)
    for got, expected in zip(deltas, want):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert_updates(updates.params, zs, want)
    assert len(updates.rule_params) == 2
    for got, expected in zip(updates.rule_params, grads):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_engine_step_moves_b_by_its_scaled_gradient():
    """Plain sgd: B changes by −lr × params_lr × ∇B_l exactly, the run's weight decay left out of B."""
    net, params = tiny_network(widths=(4, 3))
    x, y = batch()
    rule = dkp(params_lr=SCALE, decay=DECAY)
    config = RunConfig(optimizer="sgd", lr=LR, schedule="constant", weight_decay=0.5)
    engine = Engine(net, rule, make_optimizer(config, 1), 3, 3, 1,
                    rule_optimizer=make_rule_optimizer(config, 1, rule))
    state = engine.fresh(jax.random.key(3), params)
    feedback = state.rule_params
    _, _, grads = by_hand(params, x, y, feedback, DECAY)
    after, _ = jax.jit(make_train_step(net, rule, engine.optimizer, engine.rule_optimizer))(state, x, y)
    for l in range(2):
        np.testing.assert_allclose(after.rule_params[l] - feedback[l], -LR * SCALE * grads[l], rtol=1e-4, atol=1e-8)


def test_defaults_and_initial_b():
    """The authors' B lr ratio, B outside the run's weight decay, no metrics; B starts as dfa's uniform D."""
    net, params = tiny_network(widths=(4, 3))
    rule = dkp()
    assert rule.params_lr == 0.2 and rule.params_decay is False and rule.metrics == ()
    b = rule.init_params(jax.random.key(1), net, params)
    d = direct_feedback(jax.random.key(1), net, params, 1.0, "uniform")
    for got, want in zip(b, d):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("options", [{"scale": 0.0}, {"params_lr": -0.1}, {"decay": -1e-6},
                                     {"dist": "cauchy"}, {"decay": float("nan")}])
def test_bad_options_are_refused(options):
    with pytest.raises(NgfError):
        dkp(**options)
