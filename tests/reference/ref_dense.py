"""ngf's side of the dense comparisons in tests/reference/: a 20-16-12-5 mlp in float64, a batch of 8.

Every ``test_ref_<rule>.py`` on the mlp builds the network here, takes one jitted step of
the rule (``ngf_tiny_mlp.run_rule``) and lays the result out as a list of arrays, kernel
then bias per node, in ngf's layout (a kernel is [in, out]: torch's [out, in] weight
transposed). The ports never import this module; they get plain numpy arrays.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ngf.core.losses import LOSSES
from ngf.core.network import Network
from ngf.models import mlp
from ngf_tiny_mlp import bias, kernel
from reference_kit import as_float64

N_IN, WIDTHS, N_CLASSES, BATCH = 20, (16, 12), 5, 8


def dense_net(activation: str = "tanh", loss: str = "ce", biases: bool = True):
    """The 20-16-12-5 mlp and its float64 parameters (call inside ``float64()``).

    Flax starts biases at 0; with ``biases`` they are drawn at random so that the
    comparison sees them in the forward pass too; without, they stay 0 (a port of code
    whose layers have no bias runs the same forward pass).
    """
    model = mlp((N_IN,), N_CLASSES, rngs=nnx.Rngs(0), widths=WIDTHS, activation=activation)
    net, params = Network.from_model(model, (N_IN,))
    params = as_float64(params)
    if biases:  # b ~ 0.3·N(0, 1), one key per node
        keys = jax.random.split(jax.random.key(11), len(params))
        params = tuple(jax.tree_util.tree_map_with_path(lambda path, a, k=k: (
            0.3 * jax.random.normal(k, a.shape, a.dtype) if "bias" in jax.tree_util.keystr(path) else a), theta)
            for theta, k in zip(params, keys))
    return dataclasses.replace(net, loss=LOSSES[loss]), params


def sample():
    """A batch of 8 inputs (float64) and labels that cover several classes."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, N_IN))
    y = np.array([0, 1, 2, 3, 4, 0, 2, 4])
    return jnp.asarray(x, jnp.float64), jnp.asarray(y)


def torch_weights(params) -> list:
    """Each node's (weight [out, in], bias [out]) as numpy, the layout of torch's ``nn.Linear``."""
    return [(kernel(theta).T.copy(), bias(theta).copy()) for theta in params]


def flat(updates) -> list:
    """ngf's per-node updates as [kernel_1, bias_1, kernel_2, …], numpy."""
    return [a for theta in updates for a in (kernel(theta), bias(theta))]


def from_torch(grads) -> list:
    """A port's per-node (weight [out, in], bias [out]) as [kernel_1, bias_1, …] in ngf's layout."""
    return [a for w, b in grads for a in (np.asarray(w).T, np.asarray(b))]
