"""Backpropagation (``bp``): the exact gradient, written as a learning rule (docs/rules.md#bp).

Not local by definition: every node's signal reads the forward weights of every node
above it (weight transport). It walks the graph of nodes like every other rule, so on
any model its updates equal ``jax.grad`` of the whole network's loss.
"""

import jax
import jax.numpy as jnp

from ngf.core.feedback import propagate_errors
from ngf.core.rule import LearningRule, stateless_init
from ngf.host.hookspecs import hookimpl


def bp() -> LearningRule:
    """Backpropagation: δ^L = e, δ^{l-1} = f'(h^{l-1}) ⊙ J_l^T(θ_l, δ^l). No hyperparameters."""

    def compute_targets(net, params, trace, labels, state):
        # e = ∂L/∂h^L by autodiff of the network's loss (per example: the sum's gradient splits by row)
        e = jax.grad(lambda h: jnp.sum(net.loss.per_example(h, labels)))(trace[-1].pre)
        return propagate_errors(net, params, trace, e), state

    return LearningRule(stateless_init, compute_targets)


@hookimpl
def ngf_register_rules():
    """Register ``bp``."""
    return {"bp": bp}
