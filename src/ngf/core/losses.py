"""The task loss L(h^L, y) a network trains on, and its output error e = ∂L/∂h^L (docs/rules.md#notation).

Every rule reads both from the network (``net.loss.per_example``, ``net.loss.error``),
never from a loss of its own, so ``--loss`` changes what every rule learns from:

- ``ce``: cross-entropy of softmax(h^L), e = softmax(h^L) − onehot(y) (the default);
- ``mse``: ½‖h^L − onehot(y)‖², e = h^L − onehot(y): linear outputs, Lillicrap et al. 2016's FA loss;
- ``bce``: Σ_k BCE(σ(h_k), onehot_k), e = σ(h^L) − onehot(y): sigmoid outputs, Nøkland 2016's DFA loss.

Accuracy is the argmax of h^L whatever the loss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ngf.core.errors import NgfError


class Loss(NamedTuple):
    """A loss by name: ``per_example(h, y)`` → L per example [B], ``error(h, y)`` → e = ∂L/∂h [B, C]."""

    name: str
    per_example: Callable[[jax.Array, jax.Array], jax.Array]
    error: Callable[[jax.Array, jax.Array], jax.Array]


def _onehot(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example cross-entropy of softmax(logits) against integer labels."""
    logp = jax.nn.log_softmax(logits)
    return -jnp.take_along_axis(logp, labels[:, None], axis=-1)[:, 0]


def output_error(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example e = ∂CE/∂h^L = softmax(h^L) − onehot(y)."""
    return jax.nn.softmax(logits) - _onehot(logits, labels)


def squared_error(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example L = ½‖h^L − onehot(y)‖² (linear outputs)."""
    return 0.5 * jnp.sum((logits - _onehot(logits, labels)) ** 2, axis=-1)


def squared_error_error(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example e = ∂(½‖h − t‖²)/∂h = h^L − onehot(y)."""
    return logits - _onehot(logits, labels)


def binary_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example L = Σ_k −t_k log σ(h_k) − (1 − t_k) log(1 − σ(h_k)) = Σ_k softplus(h_k) − t_k h_k."""
    return jnp.sum(jax.nn.softplus(logits) - _onehot(logits, labels) * logits, axis=-1)


def binary_cross_entropy_error(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example e = σ(h^L) − onehot(y) (sigmoid outputs)."""
    return jax.nn.sigmoid(logits) - _onehot(logits, labels)


CE = Loss("ce", cross_entropy, output_error)
LOSSES: dict[str, Loss] = {
    "ce": CE,
    "mse": Loss("mse", squared_error, squared_error_error),
    "bce": Loss("bce", binary_cross_entropy, binary_cross_entropy_error),
}


def loss_named(name: str) -> Loss:
    """The loss called ``name``; an unknown name is an ``NgfError`` listing the valid ones."""
    if not isinstance(name, str) or name not in LOSSES:  # a TOML table or number is no name either
        raise NgfError(f"unknown loss {name!r}; valid losses: {', '.join(sorted(LOSSES))}")
    return LOSSES[name]
