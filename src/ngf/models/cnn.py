"""The convolutional network ``cnn``: LeNet-5's layout (LeCun et al. 1998), two conv+pool
stages then three dense layers, with defaults chosen for the feedback rules.

The defaults (3×3 kernels, 16 and 32 channels, both stages SAME, dense 256 → 128, tanh
as in LeNet-5) were chosen on MNIST and Fashion-MNIST, ten epochs, seed 0: with relu,
6 and 16 channels and 120 → 84, the feedback rules' convolutions moved at 90° or more
from the gradient and fa, lra and dfa stayed near 0.865 on Fashion-MNIST; with these
they reach 0.89–0.90 there and 0.987–0.989 on MNIST, and bp 0.92 and 0.99
(docs/experiments.md (e)). ``LENET5`` gives the classic network.
"""

from __future__ import annotations

from flax import nnx

from ngf.core.errors import NgfError
from ngf.core.network import check_dropout, identity
from ngf.models.conv import Conv, check_conv_method, pooling
from ngf.models.layers import Dense, Sequential, activation_by_name, check_bias

#: LeNet-5's layout (5×5 kernels, 6 and 16 channels, dense 120 → 84) with relu: the network
#: ``python -m benchmarks`` times against its PyTorch twin (``cnn(..., **LENET5)``).
LENET5 = {"kernel": 5, "channels": (6, 16), "widths": (120, 84), "activation": "relu", "padding": ("same", "valid")}


def image_shape(input_shape) -> tuple[int, int, int]:
    """(height, width, channels) of one example; a 2-D shape has one channel."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 2:
        return shape + (1,)
    if len(shape) != 3:
        raise NgfError(f"convolutional models need [H, W] or [H, W, C] images, got shape {shape}")
    return shape


def _positive(name: str, values) -> tuple:
    values = tuple(int(v) for v in values)
    if any(v <= 0 for v in values):
        raise NgfError(f"cnn {name} must be positive integers, got {values}")
    return values


def _paddings(padding, stages: int) -> tuple:
    """One of SAME / VALID per stage; a single name, or the last one given, repeats."""
    given = (padding,) if isinstance(padding, str) else tuple(padding)
    names = tuple(str(p).upper() for p in given)
    if not names or any(p not in ("SAME", "VALID") for p in names):
        raise NgfError(f"cnn padding must be same or valid for each stage, got {padding!r}")
    return names[:stages] + names[-1:] * max(0, stages - len(names))


def cnn(input_shape, n_classes: int, *, rngs: nnx.Rngs, channels: tuple = (16, 32),
        widths: tuple = (256, 128), activation: str = "tanh", kernel: int = 3, pool: int = 2,
        padding: tuple = ("same",), conv_method: str = "xla", bias: bool = True,
        dropout: float = 0.0) -> Sequential:
    """A LeNet-style network: conv+pool stages, then dense layers (``**LENET5`` gives LeNet-5).

    By default every convolution pads to keep its image size (LeNet-5 itself pads only
    the first: its 32×32 input is 28×28 padded by 2). Each stage's pooling is the
    start of the next layer's map (conv∘pool, then dense∘flatten∘pool), so every
    activation is elementwise (docs/rules.md#notation).

    Args:
      channels: output channels of each conv+pool stage, e.g. ``6,16``.
      widths: hidden dense layer widths, e.g. ``120,84``.
      activation: hidden activation: relu, tanh, sigmoid, gelu, elu, leaky_relu, softplus, hard_sigmoid.
      kernel: convolution window size (square).
      pool: max-pooling window and stride (1 turns pooling off).
      padding: ``same`` or ``valid`` for each stage, e.g. ``same,same``; the last repeats.
      conv_method: how convolutions are computed: xla (lax.conv), patches (im2col) or shifts (the same map;
        ``ngf.models.conv.convolve``).
      bias: whether every convolution and dense layer has a bias (false: as PyTorch's ``bias=False``).
      dropout: P in [0, 1): training multiplies each hidden dense output by Bernoulli(1 − P)/(1 − P).
    """
    channels, widths = _positive("channels", channels), _positive("widths", widths)
    kernel, pool = _positive("kernel", (kernel,))[0], _positive("pool", (pool,))[0]
    act, bias, dropout = activation_by_name(activation), check_bias("cnn", bias), check_dropout("cnn", dropout)
    check_conv_method(conv_method)
    height, width, depth = image_shape(input_shape)
    paddings = _paddings(padding, len(channels))
    for pad in paddings:  # the image size after each stage, checked before anything is built
        if pad == "VALID":
            height, width = height - kernel + 1, width - kernel + 1
        height, width = height // pool, width // pool
        if height < 1 or width < 1:
            raise NgfError(f"cnn: input {tuple(input_shape)} is too small for {len(channels)} stages "
                           f"of {kernel}×{kernel} convolution and {pool}×{pool} pooling")
    layers, pool_in = [], None  # the first convolution sees the image itself
    for out, pad in zip(channels, paddings):
        layers.append(Conv(depth, out, kernel, act, padding=pad, pool=pool_in, method=conv_method, bias=bias,
                           rngs=rngs))
        depth, pool_in = out, pooling(pool)
    sizes = (height * width * depth,) + widths + (n_classes,)
    acts = (act,) * len(widths) + (identity,)
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Dense(a, b, acts[i], pool=pool_in if i == 0 else None, bias=bias,
                            dropout=dropout if i < len(widths) else 0.0, rngs=rngs))
    return Sequential(layers)

