"""ngf's side of the convolution comparisons in tests/reference/ (drtp and pepita on a pooled conv net).

``conv_step`` is ``ngf_tiny_mlp.run_rule`` in float64: the rule's state is made from the
float64 parameters (``Network.trace_shapes`` traces a float64 input for them), then one
jitted step runs in float64.
"""

from __future__ import annotations

import jax.numpy as jnp

from ngf_tiny_mlp import run_rule


def conv_step(rule, net, params, x, y, key: int = 3):
    """One jitted step of ``rule`` in float64 (call inside ``float64()``): (signals, updates, state)."""
    return run_rule(rule, net, params, jnp.asarray(x, jnp.float64), jnp.asarray(y), key)
