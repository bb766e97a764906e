"""ngf.testing, the kit plugin authors check their rules with: it passes a rule that uses every optional part
of the interface, and fails, in one line naming the rule and what failed, for rules that break the contract."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ngf
import ngf.testing
from ngf.core.rule import Updates


def fa_like(name: str, feedback=lambda params, state: state, update=None, **rule) -> ngf.LearningRule:
    """Feedback alignment through ``feedback(params, state)`` (by default its random B), its updates passed
    through ``update(updates)`` if given."""

    def init(key, net, params):
        return (None, *ngf.random_like(key, tuple(params[1:])))

    def compute_targets(net, params, trace, labels, state):
        e = net.loss.error(trace[-1].pre, labels)
        return ngf.propagate_errors(net, feedback(params, state), trace, e), state

    def local_update(net, params, trace, deltas, state):
        updates = ngf.updates_from_deltas(net, params, trace, deltas)
        return (update(updates) if update else updates), state

    return ngf.LearningRule(init, compute_targets, local_update, name=name, **rule)


def own_passes(noise: float = 0.1) -> ngf.LearningRule:
    """Every optional part: trainable feedback B (init_params, params_lr), its own forward pass (uses_trace=False,
    x, Updates.logits), a step key for noise on the error sent down, a metric and a prediction."""

    def init_params(key, net, params):
        return ngf.random_like(key, tuple(params[1:]))  # B_l for the nodes above the first

    def compute_targets(net, params, trace, labels, state, rule_params, key, x):
        assert trace is None  # the engine ran no forward pass
        _, trace = net.forward(params, x)
        e = net.loss.error(trace[-1].pre, labels)
        sent = e + noise * jax.random.normal(key, e.shape, e.dtype)
        return (ngf.propagate_errors(net, (None, *rule_params), trace, sent), trace), state

    def local_update(net, params, trace, signals, state, rule_params):
        deltas, trace = signals
        norm = jnp.sqrt(sum(jnp.sum(b ** 2) for b in jax.tree.leaves(rule_params)))
        decay = jax.tree.map(lambda b: 1e-2 * b, rule_params)  # B shrinks: a local update of B
        return Updates(ngf.updates_from_deltas(net, params, trace, deltas), decay, {"feedback_norm": norm},
                       trace[-1].pre), state

    def predict(net, params, x, state, rule_params):
        return net.logits(params, x)

    return ngf.LearningRule(ngf.stateless_init, compute_targets, local_update, name="own-passes",
                            init_params=init_params, predict=predict, metrics=("feedback_norm",),
                            uses_trace=False, params_lr=0.5)


def test_a_rule_with_every_optional_part_passes_every_check():
    ngf.testing.check_rule(own_passes())


def test_a_rule_that_reads_another_nodes_forward_weights_fails_locality():
    """Its signal at node l goes through params[l+1]: backprop's weight transport."""
    transport = fa_like("transport", feedback=lambda params, state: params)
    with pytest.raises(AssertionError, match=r"^rule 'transport' fails the locality check: changing node 1's "
                                             r"forward weights moved the updates of nodes \[0\]"):
        ngf.testing.check_locality(transport, "mlp")
    with pytest.raises(AssertionError, match=r"^rule 'transport' fails the locality check: it takes J\^T through "
                                             r"the forward weights of nodes \[1, 2\] \(weight transport\)$"):
        ngf.testing.check_locality(transport, "mlp", forward_reads="any")
    ngf.testing.check_locality(fa_like("fa-like"), "mlp")  # its own random B: local


def test_an_update_of_the_wrong_shape_fails_the_contract():
    transposed = lambda updates: (jax.tree.map(jnp.transpose, updates[0]), *updates[1:])
    with pytest.raises(AssertionError, match=re.escape(
            "rule 'wrong-shape' fails the contract check: the update of layer 1's linear.kernel has shape (8, 36); "
            "expected (36, 8), its parameter's")):
        ngf.testing.check_rule_contract(fa_like("wrong-shape", update=transposed), "mlp")


def test_undeclared_metrics_and_a_changing_state_fail_the_contract():
    with pytest.raises(AssertionError, match=r"^rule 'custom' fails the contract check: local_update reported the "
                                             r"metrics none; it declares \['loss'\]"):
        ngf.testing.check_rule_contract(fa_like(None, metrics=("loss",)))
    grows = ngf.LearningRule(lambda key, net, params: jnp.zeros(()),
                             lambda net, params, trace, labels, state: ((), state[None]),
                             lambda net, params, trace, signals, state: (jax.tree.map(jnp.zeros_like, params), state),
                             name="grows")
    with pytest.raises(AssertionError, match=re.escape("rule 'grows' fails the contract check: its state changed in "
                                                       "one step to float32[1]; expected float32[], as it got it")):
        ngf.testing.check_rule_contract(grows)


def test_randomness_from_outside_the_key_fails_determinism():
    """NumPy's random numbers, drawn while the step is traced, differ between two engines."""
    noisy = fa_like("noisy", update=lambda updates: jax.tree.map(
        lambda u: u + np.float32(np.random.default_rng().normal()), updates))
    with pytest.raises(AssertionError, match=r"^rule 'noisy' fails the determinism check: two runs from the same "
                                             r"seed differ after 2 epochs at state\.params\[0\]"):
        ngf.testing.check_determinism(noisy)


def test_the_kit_allows_rank_promotion_as_ngf_run_does_and_names_the_line_under_raise():
    """The suite's conftest sets 'raise'; the kit runs as `ngf run` would unless asked to be strict."""
    line = None

    def broadcast(params, state):
        nonlocal line
        line = broadcast.__code__.co_firstlineno + 3
        return jax.tree.map(lambda b: b + jnp.zeros(b.shape[-1]) if b.ndim == 2 else b, state)  # rank 2 + rank 1

    rule = fa_like("broadcast", feedback=broadcast)
    assert jax.config.jax_numpy_rank_promotion == "raise"
    ngf.testing.check_rule_contract(rule)
    with pytest.raises(AssertionError, match=r"^rule 'broadcast' fails the contract check: its compute_targets raised ValueError: .*rank_"
                                             r"promotion.*\(at .*test_testing\.py:(\d+)\)$") as caught:
        ngf.testing.check_rule_contract(rule, rank_promotion="raise")
    assert caught.match(rf":{line}\)$")
