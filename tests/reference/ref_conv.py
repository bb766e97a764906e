"""ngf's side of the convolution comparisons in tests/reference/ (drtp and pepita on a pooled conv net).

``conv_step`` is ``ngf_tiny_mlp.run_rule`` for a convolution in float64: the rule's state is
made from the float64 parameters (``Network.trace_shapes`` traces a float64 input for them),
then one jitted step runs in float64.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ngf.core.rule import node_updates
from reference_kit import as_float64


def conv_step(rule, net, params, x, y, key: int = 3):
    """One jitted step of ``rule`` in float64 (call inside ``float64()``): (signals, updates, state)."""
    state = as_float64(rule.init(jax.random.key(key), net, params))
    x, y = jnp.asarray(x, jnp.float64), jnp.asarray(y)

    @jax.jit
    def step(params, state):
        _, trace = net.forward(params, x)
        signals, state = rule.compute_targets(net, params, trace, y, state)
        updates, state = rule.local_update(net, params, trace, signals, state)
        return signals, node_updates(updates), state

    return step(params, state)
