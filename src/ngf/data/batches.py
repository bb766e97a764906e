"""Batches: a training batch taken from the epoch's order, evaluation batches of one size, images in [0, 1].

A dataset's images reach the device as they were read (uint8 pixels take a quarter of
float32's memory there); each batch a step takes is scaled to [0, 1] on the device by
``prepare_inputs``, inside the compiled step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

EVAL_BATCH = 1000  # examples per evaluation call


def prepare_inputs(x: jax.Array) -> jax.Array:
    """Images → float32 in [0, 1]: uint8 pixels divided by 255, floats (already in [0, 1]) as they are.

    ``check_splits`` refuses other images (docs/plugins.md, A dataset); the dtype is static under jit.
    """
    if jnp.issubdtype(x.dtype, jnp.floating):
        return x.astype(jnp.float32)
    return x.astype(jnp.float32) / 255.0


def take_batch(data_x, data_y, perm, index, size: int) -> tuple:
    """Training batch ``index`` of an epoch, ``(x, y)``: the examples at ``perm[index·size : (index+1)·size]``."""
    rows = jax.lax.dynamic_slice_in_dim(perm, index * size, size)
    return data_x[rows], data_y[rows]


def padded_batches(data_x, data_y):
    """``(x, y, weights)`` batches of one fixed size (``EVAL_BATCH``, or the whole set if smaller), so
    every evaluation call has the same shape: the last is padded with zeros of weight 0."""
    n, size = data_x.shape[0], min(EVAL_BATCH, data_x.shape[0])
    for start in range(0, n, size):
        x, y = data_x[start:start + size], data_y[start:start + size]
        weights = jnp.ones(x.shape[0], jnp.float32)
        if x.shape[0] < size:
            pad = size - x.shape[0]
            x = jnp.concatenate([x, jnp.zeros((pad,) + x.shape[1:], x.dtype)])
            y = jnp.concatenate([y, jnp.zeros(pad, y.dtype)])
            weights = jnp.concatenate([weights, jnp.zeros(pad, jnp.float32)])
        yield x, y, weights


def first_eval_batch(data_x, data_y) -> tuple:
    """The first of ``padded_batches``' batches, ``(x, y, weights)``: the shape every evaluation call has."""
    size = min(EVAL_BATCH, data_x.shape[0])
    return data_x[:size], data_y[:size], jnp.ones(size, jnp.float32)
