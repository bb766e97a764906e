"""A test plugin whose rules fail inside their step, as a careless plugin's might: ``raises`` raises in
``compute_targets``, ``exits-in-step`` calls ``sys.exit(5)`` there, and ``reshapes`` returns a state of
another structure than it got. Load it with ``--plugin ngf_failing_rules`` (the tests folder is on
``sys.path``)."""

import sys

import jax.numpy as jnp

import ngf
from ngf.host.hookspecs import hookimpl


def _zero_updates(net, params, trace, signals, state):
    """Updates of zeros, shaped like the parameters."""
    return ngf.updates_from_deltas(net, params, trace, [jnp.zeros_like(t.pre) for t in trace]), state


def raises():
    """A rule whose compute_targets raises ValueError."""
    def compute_targets(net, params, trace, labels, state):
        raise ValueError("a bug in the plugin")
    return ngf.LearningRule(ngf.stateless_init, compute_targets, _zero_updates)


def exits_in_step():
    """A rule whose compute_targets calls sys.exit(5)."""
    def compute_targets(net, params, trace, labels, state):
        sys.exit(5)
    return ngf.LearningRule(ngf.stateless_init, compute_targets, _zero_updates)


def reshapes():
    """A rule whose state turns from one array into a pair of them in its step."""
    def compute_targets(net, params, trace, labels, state):
        return None, (state, state)
    return ngf.LearningRule(lambda key, net, params: jnp.zeros(()), compute_targets, _zero_updates)


@hookimpl
def ngf_register_rules():
    """Register ``raises``, ``exits-in-step`` and ``reshapes``."""
    return {"raises": raises, "exits-in-step": exits_in_step, "reshapes": reshapes}
