"""ngf's side of the dtp, ddtp, pc and lra comparisons (tests/reference/test_ref_{dtp,ddtp,pc,lra}.py).

A float64 tanh mlp of 20 inputs, any hidden widths and 5 classes, a batch of 8, and one jitted
step of a rule as the engine calls it. The model is built abstractly (``nnx.eval_shape``) and its
weights drawn with numpy: JAX compiles nothing but the step (each eager initialiser would cost a
compilation). The ports never import this module; they get plain numpy arrays in ngf's layout (a
kernel is [in, out]).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ngf.core.network import Network
from ngf.core.rule import call
from ngf.models import mlp
from ngf_tiny_mlp import bias, kernel
from ref_dense import BATCH, N_CLASSES, N_IN, flat, sample  # noqa: F401 - tests import them from here



def tanh_mlp(widths: tuple, biases: bool = True, seed: int = 1):
    """A 20-…-5 tanh mlp and float64 parameters (call inside ``float64()``): W ~ N(0, 1/fan_in) and,
    with ``biases``, b ~ 0.3·N(0, 1) so that the forward pass uses them; without, b = 0."""
    model = nnx.eval_shape(lambda: mlp((N_IN,), N_CLASSES, rngs=nnx.Rngs(0), widths=widths, activation="tanh"))
    net, shapes = Network.from_model(model, (N_IN,))
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        if "bias" in jax.tree_util.keystr(path):
            return jnp.asarray(0.3 * rng.normal(size=leaf.shape) if biases else np.zeros(leaf.shape), jnp.float64)
        return jnp.asarray(rng.normal(size=leaf.shape) / np.sqrt(leaf.shape[0]), jnp.float64)

    return net, tuple(jax.tree_util.tree_map_with_path(draw, theta) for theta in shapes)


def weights(params) -> tuple[list, list]:
    """Each node's kernel [in, out] and bias as numpy lists."""
    return [kernel(t) for t in params], [bias(t) for t in params]


def rule_step(rule, net, params, x, y, owned=(), step_key=None, extra=None, state_key: int = 3):
    """One jitted step of ``rule`` as the engine calls it: (``local_update``'s ``Updates``, the rule's
    state after ``init`` from ``key(state_key)``, ``extra(trace, state)`` computed in the same program).

    ``owned`` are the rule's trainable parameters and ``step_key`` the key it draws its noise from.
    """

    @jax.jit  # one compilation instead of one per eager operation
    def step(params, owned):
        _, trace = net.forward(params, x)
        state = rule.init(jax.random.key(state_key), net, params)
        extras = {"rule_params": owned, "key": step_key, "x": x}
        signals, after = call(rule.compute_targets, net, params, trace, y, state, extras=extras)
        updates, _ = call(rule.local_update, net, params, trace, signals, after, extras=extras)
        return updates, state, None if extra is None else extra(trace, state)

    return step(params, owned)


def init_owned(rule, net, params, scale: float = 0.3, seed: int = 2):
    """The rule's trainable parameters, shaped as its ``init_params`` makes them (traced, not compiled),
    drawn with numpy, N(0, scale²) per entry: a compiled initialiser cost seconds, and any values will do."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda k, p: rule.init_params(k, net, p), jax.random.key(0), params)
    return jax.tree.map(lambda leaf: jnp.asarray(scale * rng.normal(size=leaf.shape), leaf.dtype), shapes)
