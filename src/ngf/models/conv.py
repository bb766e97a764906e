"""Convolutional layers and pooling activations (DESIGN.md §2).

A convolution layer's ``__call__`` is its map a_l (the convolution, returning h^l)
and its ``activation`` is f_l, which may end in pooling: rules take the
vector–Jacobian product of f_l, so pooling needs no special case anywhere.
Images are NHWC, the layout the datasets deliver and XLA's CPU backend prefers
(docs/speed-cpu.md).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from ngf.core.network import identity


def max_pool(x: jax.Array, window: int = 2) -> jax.Array:
    """Non-overlapping max pooling of NHWC ``x`` by reshape-and-max.

    Rows and columns that do not fill a window are dropped (``VALID`` pooling).
    On XLA's CPU backend its backward pass ran about 2× faster than that of
    ``lax.reduce_window`` (docs/speed-cpu.md).
    """
    n, height, width, channels = x.shape
    rows, cols = height // window, width // window
    x = x[:, :rows * window, :cols * window, :]
    return x.reshape(n, rows, window, cols, window, channels).max(axis=(2, 4))


def global_mean_pool(x: jax.Array) -> jax.Array:
    """Average NHWC ``x`` over its spatial axes: [N, H, W, C] → [N, C]."""
    return jnp.mean(x, axis=(1, 2))


@dataclasses.dataclass(frozen=True)
class Pooled:
    """The activation f(h) = max_pool(act(h)): a pointwise activation, then pooling."""

    act: Callable = identity
    window: int = 2

    def __call__(self, h: jax.Array) -> jax.Array:
        return max_pool(self.act(h), self.window)


@dataclasses.dataclass(frozen=True)
class GlobalPooled:
    """The activation f(h) = global_mean_pool(act(h)), ending a convolutional trunk."""

    act: Callable = identity

    def __call__(self, h: jax.Array) -> jax.Array:
        return global_mean_pool(self.act(h))


def as_images(z: jax.Array) -> jax.Array:
    """Give [N, H, W] inputs a channel axis; NHWC inputs pass unchanged."""
    return z[..., None] if z.ndim == 3 else z


class Conv(nnx.Module):
    """A convolution layer: h = conv(θ, z) + b, NHWC, with activation f (pooling allowed)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, activation=identity, *,
                 padding: str = "SAME", stride: int = 1, rngs: nnx.Rngs):
        self.conv = nnx.Conv(in_channels, out_channels, (kernel, kernel), strides=stride,
                             padding=padding, rngs=rngs)
        self.activation = activation

    def __call__(self, z: jax.Array) -> jax.Array:
        return self.conv(as_images(z))
