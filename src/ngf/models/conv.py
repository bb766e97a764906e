"""Convolutional layers and pooling (docs/rules.md#notation).

A convolution layer's ``__call__`` is its map a_l (returning h^l) and its
``activation`` is f_l, always elementwise. Pooling is parameter-free, so it belongs
to the map of the layer *above*: a_l(θ, z) = conv(θ, pool(z)) or dense(θ, pool(z)).
Then every J_l^T(θ, δ) lands in z^{l-1}'s shape, the vjp of the pooling included,
and no rule needs to know that pooling exists. Images are NHWC, the layout the
datasets deliver and XLA's CPU backend prefers.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from ngf.core.errors import NgfError
from ngf.core.network import identity


def _pool_blocks(x: jax.Array, window: int) -> jax.Array:
    """[N, H, W, C] → [N, H/w, w, W/w, w, C], cropping rows and columns that fill no window."""
    n, height, width, channels = x.shape
    rows, cols = height // window, width // window
    x = x[:, :rows * window, :cols * window, :]
    return x.reshape(n, rows, window, cols, window, channels)


def _windows_last(x: jax.Array, window: int) -> jax.Array:
    """[N, H, W, C] → [N, H/w, W/w, C, w·w]: each pooling window's values on the last axis."""
    blocks = _pool_blocks(x, window).transpose(0, 1, 3, 5, 2, 4)
    return blocks.reshape(blocks.shape[:4] + (window * window,))


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def max_pool(x: jax.Array, window: int = 2) -> jax.Array:
    """Non-overlapping max pooling of NHWC ``x`` by reshape-and-max.

    Rows and columns that do not fill a window are dropped (``VALID`` pooling).
    Its derivative passes each window's tangent (or cotangent) through the first
    maximum of the window, as ``lax.reduce_window``'s and PyTorch's backward do
    (JAX's own rule for ``max`` splits it among tied maxima, a different valid
    subgradient); on the project's CPU that backward pass took 0.25 ms for LeNet-5's
    first pooling against 2.2 ms by JAX's rule (docs/benchmarks.md).
    """
    return _pool_blocks(x, window).max(axis=(2, 4))


@max_pool.defjvp
def _max_pool_jvp(window: int, primals: tuple, tangents: tuple) -> tuple:
    """Tangent of the pooled value: each window's tangent at its first maximum (linear in it)."""
    (x,), (t,) = primals, tangents
    values = _windows_last(x, window)
    first = jax.nn.one_hot(jnp.argmax(values, axis=-1), window * window, dtype=x.dtype)
    return values.max(axis=-1), jnp.sum(first * _windows_last(t, window), axis=-1)


def global_mean_pool(x: jax.Array) -> jax.Array:
    """Average NHWC ``x`` over its spatial axes: [N, H, W, C] → [N, C]."""
    return jnp.mean(x, axis=(1, 2))


def as_images(z: jax.Array) -> jax.Array:
    """Give [N, H, W] inputs a channel axis; NHWC inputs pass unchanged."""
    return z[..., None] if z.ndim == 3 else z


@dataclasses.dataclass(frozen=True)
class MaxPool:
    """Max pooling of a layer's input, the first part of its map: a_l(θ, z) = map(θ, max_pool(z))."""

    window: int = 2

    def __call__(self, z: jax.Array) -> jax.Array:
        return max_pool(as_images(z), self.window)


@dataclasses.dataclass(frozen=True)
class GlobalMeanPool:
    """The spatial mean of a layer's input, the first part of its map: a_l(θ, z) = map(θ, mean(z))."""

    def __call__(self, z: jax.Array) -> jax.Array:
        return global_mean_pool(as_images(z))


def pooling(window: int) -> MaxPool | None:
    """``MaxPool(window)``, or None when the window is 1 (no pooling)."""
    return MaxPool(window) if window > 1 else None


def pooled(pool: Callable | None, z: jax.Array) -> jax.Array:
    """Apply a layer's input pooling, if it has one."""
    return z if pool is None else pool(z)


CONV_METHODS = ("xla", "patches", "shifts")


def check_conv_method(method: str) -> str:
    """Validate a convolution method name (see ``convolve``)."""
    if method not in CONV_METHODS:
        raise NgfError(f"unknown conv_method {method!r}; valid methods: {', '.join(CONV_METHODS)}")
    return method


def _pads(size: int, window: int, stride: int, padding: str) -> tuple[int, int]:
    """(low, high) padding of one spatial axis, as XLA's SAME and VALID define them."""
    if padding == "VALID":
        return 0, 0
    out = -(-size // stride)
    total = max((out - 1) * stride + window - size, 0)
    return total // 2, total - total // 2


def _windows(x: jax.Array, kh: int, kw: int, stride: int, padding: str):
    """The input under each window offset (i, j): kh·kw strided slices of the padded x."""
    (top, bottom), (left, right) = _pads(x.shape[1], kh, stride, padding), _pads(x.shape[2], kw, stride, padding)
    x = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    rows, cols = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
    return [x[:, i:i + (rows - 1) * stride + 1:stride, j:j + (cols - 1) * stride + 1:stride, :]
            for i in range(kh) for j in range(kw)]


def convolve(x: jax.Array, kernel: jax.Array, stride: int = 1, padding: str = "SAME",
             method: str = "xla") -> jax.Array:
    """Convolve NHWC ``x`` with an HWIO ``kernel`` (no bias): the same map three ways.

    ``xla`` (the default): ``lax.conv_general_dilated``. ``patches``: im2col, every
    window's input in one matrix times the flattened kernel. ``shifts``: the sum over
    window offsets (i, j) of the shifted input times kernel[i, j]. Gradients come from
    autodiff of each. On this project's CPU the convolution op alone was up to 10×
    slower than shifted matmuls (one input channel), yet whole ngf training steps ran
    no faster with either alternative, so XLA's op stays the default
    (docs/benchmarks.md, the ``paths`` section).
    """
    kh, kw, cin, cout = kernel.shape
    if method == "xla":
        return jax.lax.conv_general_dilated(x, kernel, (stride, stride), padding,
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))
    windows = _windows(x, kh, kw, stride, padding)
    if method == "patches":  # h = [x_(0,0) … x_(kh-1,kw-1)] · vec(K), channels fastest, as K is laid out
        return jnp.concatenate(windows, axis=-1) @ kernel.reshape(kh * kw * cin, cout)
    return sum(w @ kernel[i // kw, i % kw] for i, w in enumerate(windows))  # h = Σ_ij x_(i,j) · K[i, j]


def apply_conv(conv: nnx.Conv, x: jax.Array, method: str = "xla") -> jax.Array:
    """``conv(x)`` for an ``nnx.Conv`` with square strides and SAME/VALID padding, by ``convolve``."""
    stride = conv.strides if isinstance(conv.strides, int) else conv.strides[0]
    h = convolve(x, conv.kernel[...], stride, conv.padding, method)
    return h if conv.bias is None else h + conv.bias[...][None, None, None]


class Conv(nnx.Module):
    """A convolution layer: h = conv(θ, pool(z)) + b (without b when ``bias`` is false), NHWC, with an
    elementwise activation f.

    ``pool`` (e.g. ``MaxPool(2)``) pools the layer's input first; None leaves it as is.
    ``method`` is how the convolution is computed (``convolve``); the map is the same.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, activation=identity, *,
                 padding: str = "SAME", stride: int = 1, pool: Callable | None = None,
                 method: str = "xla", bias: bool = True, rngs: nnx.Rngs):
        self.conv = nnx.Conv(in_channels, out_channels, (kernel, kernel), strides=stride,
                             padding=padding, use_bias=bias, rngs=rngs)
        self.activation = activation
        self.pool = pool
        self.method = check_conv_method(method)

    def __call__(self, z: jax.Array) -> jax.Array:
        return apply_conv(self.conv, pooled(self.pool, as_images(z)), self.method)
