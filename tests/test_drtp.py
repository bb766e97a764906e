"""drtp against a hand computation: dfa's direct signals with the label in place of the error (issue 14)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ngf.testing
from ngf.cli.hints import PROTOCOL_HINTS, protocol_hint
from ngf.core.errors import NgfError
from ngf.host.registry import load_registry
from ngf.plugins.drtp import drtp
from ngf.runs.config import RunConfig
from ngf_tiny_mlp import assert_updates, batch, numpy_forward, output_error, run_rule, tiny_network

REGISTRY = load_registry()


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
    with pytest.raises(NgfError, match=r"^drtp option placement: unknown placement 'winners'; valid placements: "
                                       r"read, output$"):
        drtp(placement="winners")


def test_on_an_mlp_both_placements_are_the_same():
    net, params = tiny_network(widths=(4, 3))
    x, y = batch()
    read, output = (run_rule(drtp(placement=p), net, params, x, y) for p in ("read", "output"))
    for a, b in zip(jax.tree.leaves(read), jax.tree.leaves(output)):
        np.testing.assert_array_equal(a, b)


def test_output_placement_lands_on_every_position_of_a_pooled_convolution():
    """D_l is sized to z^l before pooling and δ^l = f'(h^l) ⊙ D_l(−onehot(y)) there (the authors' CNN_block)."""
    net, params = ngf.testing.tiny_network("cnn", {"channels": (2,), "widths": (5,), "activation": "tanh"},
                                           input_shape=(8, 8, 1))
    x, y = jax.random.uniform(jax.random.key(1), (3, 8, 8, 1)), jnp.array([0, 2, 1])
    deltas, _, state = run_rule(drtp(placement="output"), net, params, x, y)
    _, trace = net.forward(params, x)
    d = np.asarray(state.feedback[0])
    assert d.shape == (8 * 8 * 2, 3)  # z^0: 8×8×2, before the next node's 2×2 pooling
    target = -np.eye(3)[np.asarray(y)]
    want = (1 - np.tanh(np.asarray(trace[0].pre)) ** 2) * (target @ d.T).reshape(3, 8, 8, 2)
    np.testing.assert_allclose(deltas[0], want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("model", ["cnn", "resnet"])
def test_output_placement_is_local(model):
    """With the trace fixed, changing node k's forward weights moves no other node's update (as
    ngf.testing.check_locality's first proof, in one compiled function)."""
    net, params = ngf.testing.tiny_network(model)
    x, y = jax.random.uniform(jax.random.key(1), (3, 6, 6, 1)), jnp.array([0, 2, 1])
    rule = drtp(placement="output")
    state = rule.init(jax.random.key(0), net, params)
    assert [d.shape[0] for d in state.feedback] == [math.prod(t.out.shape[1:]) for t in net.trace_shapes(params)[:-1]]

    @jax.jit
    def updates(p):  # the trace stays the forward pass at ``params``
        trace = net.forward(params, x)[1]
        return rule.local_update(net, p, trace, rule.compute_targets(net, p, trace, y, state)[0], state)[0]

    before = updates(params)
    for k in [l for l, theta in enumerate(params) if jax.tree.leaves(theta)]:
        moved = tuple(jax.tree.map(lambda a: 3 * a + 0.1, theta) if l == k else theta for l, theta in enumerate(params))
        after = updates(moved)
        for l in range(net.depth):
            if l != k:
                for a, b in zip(jax.tree.leaves(before[l]), jax.tree.leaves(after[l])):
                    np.testing.assert_array_equal(a, b)


def hint(rule="drtp", model="mlp", rule_opts=None, model_opts=None):
    config = RunConfig(rule=rule, model=model, rule_opts=rule_opts or {}, model_opts=model_opts or {})
    return protocol_hint(config, REGISTRY)


def test_a_rule_at_defaults_where_its_papers_protocol_matters_gets_one_line_naming_the_file():
    assert [h.file for h in PROTOCOL_HINTS] == ["docs/reproductions/frenkel2021-drtp-fc.toml",
                                                "docs/reproductions/dellaferrera2022-pepita-conv.toml"]
    assert "docs/reproductions/frenkel2021-drtp-fc.toml" in hint()  # drtp, mlp (relu by default)
    assert "frenkel2021-drtp-fc.toml" in hint(rule_opts={"scale": 1.0})  # an option given at its default
    assert "dellaferrera2022-pepita-conv.toml" in hint("pepita", "cnn")  # cnn pools by default
    assert "\n" not in hint("pepita", "cnn", model_opts={"pool": 3})


@pytest.mark.parametrize("case", [
    {"rule_opts": {"scale": 2.0}},  # an option changed
    {"model_opts": {"activation": "tanh"}},  # not relu
    {"model": "cnn"}, {"rule": "dfa"},  # another model, another rule
    {"rule": "pepita", "model": "cnn", "model_opts": {"pool": 1}},  # a cnn without pooling
    {"rule": "pepita", "model": "mlp"},
])
def test_no_line_for_other_runs(case):
    assert hint(**case) is None
