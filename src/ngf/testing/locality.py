"""The locality check: a node's update reads no other node's forward weights (docs/rules.md).

Two proofs, as tests/test_locality.py gives them for ngf's own rules. With the batch, the
forward trace and the rule's state fixed, each weight node k's forward parameters in turn
are changed at random: no other node's update may move (a rule that runs the network
forward again may move the nodes above k). And the rule is traced with every node map
watched: a map evaluated with node c's own parameters at an input that automatic
differentiation is tracing is a J^T (or J) taken with θ_c, weight transport, which a
relaxation's forward predictions are not.
"""

from __future__ import annotations

import jax
import numpy as np

from ngf.core.step import step_extras
from ngf.core.network import Network
from ngf.core.rule_checks import checked_pair
from ngf.core.rule import LearningRule, as_updates, call
from ngf.testing.subject import CheckFailed, checking, first_difference, snapshot, subject

#: the tracers of jax.jvp / jax.vjp / jax.linearize: a node map evaluated at one is being differentiated
AD_TRACERS = {"JVPTracer", "LinearizeTracer"}
#: which other nodes' updates may move when node k's forward weights change (the trace fixed)
FORWARD_READS = ("none", "above", "any")


def weight_nodes(params) -> list[int]:
    """The nodes that have parameters (a sum node has none)."""
    return [l for l, theta in enumerate(params) if jax.tree.leaves(theta)]


def changed(params, k: int) -> tuple:
    """θ with node k's parameters shifted at random (3·θ + 0.1 + noise)."""
    noise = lambda a: 3 * a + 0.1 + jax.random.normal(jax.random.key(k), a.shape, a.dtype)
    return tuple(jax.tree.map(noise, p) if l == k else p for l, p in enumerate(params))


def fixed_updates(s, state):
    """forward parameters → the rule's per-node updates, with the batch, trace (the forward pass at
    ``state.params``, unless the rule runs its own), state and step fixed."""
    rule, net = s.rule, s.net
    x, y = s.batch()
    trace = net.forward(state.params, x)[1] if rule.uses_trace else None
    extras = step_extras(state, x)

    def updates(params):
        signals, after = checked_pair(rule, "compute_targets", call(
            rule.compute_targets, net, params, trace, y, state.rule_state, extras=extras), "signals")
        result, _ = checked_pair(rule, "local_update", call(
            rule.local_update, net, params, trace, signals, after, extras=extras), "updates")
        return as_updates(rule, result).params

    return updates


def moved_by_others(s, state, updates, exempt: set, forward_reads: str) -> None:
    """``CheckFailed`` if changing some node k's forward weights moves another node's update (only the
    nodes above k may move for ``forward_reads='above'``)."""
    jitted = jax.jit(updates)
    before = snapshot(jitted(state.params))
    for k in weight_nodes(state.params):
        if k in exempt:
            continue
        after = snapshot(jitted(changed(state.params, k)))
        moved = [l for l in range(s.net.depth) if l != k and first_difference(before[l], after[l]) is not None]
        wrong = [l for l in moved if not (forward_reads == "above" and l > k)]
        if wrong:
            raise CheckFailed(f"changing node {k}'s forward weights moved the updates of nodes {wrong} "
                              f"(the batch and trace fixed): they read node {k}'s weights")


def transposed_forward_weights(s, state, updates) -> set:
    """The weight nodes c whose own forward parameters θ_c the rule differentiates a node map through
    w.r.t. its input (J^T or J taken with θ_c: weight transport), found by tracing ``updates`` once
    (``jax.eval_shape``) with every node map watched."""
    found, real = set(), Network.pre_activation
    own = [jax.tree.leaves(theta) for theta in state.params]

    def watched(self, l, theta, z):
        got = jax.tree.leaves(theta)
        if own[l] and type(z).__name__ in AD_TRACERS and len(got) == len(own[l]) and all(
                not isinstance(t, jax.core.Tracer) and np.array_equal(t, o) for t, o in zip(got, own[l])):
            found.add(l)
        return real(self, l, theta, z)

    Network.pre_activation = watched
    try:
        jax.eval_shape(lambda: updates(state.params))
    finally:
        Network.pre_activation = real
    return found


@checking("the locality check")
def check_locality(rule: LearningRule, model="mlp", *, exempt=(), forward_reads: str = "none", **setup) -> None:
    """No node's update reads another node's forward weights, on a tiny ``model``.

    ``exempt``: nodes whose forward weights the rule may read, by index (negative ones count
    from the output: ``dtp``'s top target steps through the output node's weights,
    ``exempt=(-1,)``). ``forward_reads``: ``'none'`` (changing node k moves no other node's
    update), ``'above'`` (a rule that runs the network forward again, as PEPITA: only the
    nodes above k may move) or ``'any'`` (a relaxation, as predictive coding: the moving
    test is skipped and only weight transport is watched for). A rule that runs its own passes
    (``uses_trace=False``) is checked as ``'any'``: its trace cannot be held fixed. A rule
    that reads forward weights by definition (backprop, sign symmetry) is not local: leave
    this check out.
    """
    if forward_reads not in FORWARD_READS:
        raise CheckFailed(f"forward_reads={forward_reads!r}; expected one of {', '.join(FORWARD_READS)}")
    s = subject(rule, model, **setup)
    state = s.start(s.engine())
    exempt = {k % s.net.depth for k in exempt}
    updates = fixed_updates(s, state)
    if forward_reads != "any" and rule.uses_trace:
        moved_by_others(s, state, updates, exempt, forward_reads)
    read = sorted(transposed_forward_weights(s, state, updates) - exempt)
    if read:
        raise CheckFailed(f"it takes J^T through the forward weights of nodes {read} (weight transport)")
