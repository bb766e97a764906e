"""The residual network ``resnet``: normalisation-free, for grey or colour images of any size.

A graph of nodes (docs/rules.md#graph), each holding at most one convolution: a residual
block z ↦ f(skip(z) + α·conv₂(g(conv₁(z)))) (He et al. 2016, without batch
normalisation) is a node per convolution, conv₁ (activation g) and conv₂ (the scale α,
identity activation), then a weightless ``Add`` node with parents {conv₂, skip} and
activation f. The identity skip is an edge; a projection shortcut (a 1×1 convolution,
when the shape changes) is a node of its own on the skip path. So every rule reaches
each convolution through the shared backward walk, and a rule that reads no other
node's forward weights reads none inside a block either.

``RESNET20`` gives He et al.'s CIFAR-10 ResNet-20 (2016, section 4.2): a 3×3 stem of 16
channels without pooling, 3 stages × 3 blocks of 16, 32 and 64 channels, global average
pooling and a dense layer to the logits: 6·3 + 2 = 20 weighted layers, plus the two 1×1
projection shortcuts where the stages change shape (their "option B"; the paper's
CIFAR networks pad the identity with zeros instead), and no batch normalisation.
"""

from __future__ import annotations

import jax
from flax import nnx

from ngf.core.checks import number
from ngf.core.errors import NgfError
from ngf.core.network import identity
from ngf.models.cnn import image_shape
from ngf.models.conv import Conv, GlobalMeanPool, apply_conv, as_images, check_conv_method, max_pool
from ngf.models.graph import Add, Graph, GraphBuilder
from ngf.models.layers import Dense, activation_by_name, check_bias


class ScaledConv(Conv):
    """A convolution node whose map ends with an elementwise scale: h = α·conv(θ, z) (α = 1: plain)."""

    def __init__(self, *args, scale: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.scale = scale

    def __call__(self, z: jax.Array) -> jax.Array:
        h = super().__call__(z)
        return h if self.scale == 1.0 else self.scale * h


class PooledConv(Conv):
    """The stem: a convolution whose map ends with 2×2 max pooling, h = pool(conv(θ, x)).

    With a monotone activation f, f(pool(h)) = pool(f(h)), the classic conv → f → pool;
    pooling at the end of the stem's map lets the first block's branch and its identity
    skip read the same pooled image.
    """

    def __call__(self, z: jax.Array) -> jax.Array:
        return max_pool(super().__call__(z), 2)


def residual_block(g: GraphBuilder, z: int, in_channels: int, out_channels: int, activation, *,
                   stride: int, branch_scale: float, method: str, bias: bool = True, rngs: nnx.Rngs) -> int:
    """Add one block's nodes reading node ``z``; return the handle of its sum node."""
    h = g.add(Conv(in_channels, out_channels, 3, activation, stride=stride, method=method, bias=bias, rngs=rngs), z)
    h = g.add(ScaledConv(out_channels, out_channels, 3, identity, scale=branch_scale, method=method,
                         bias=bias, rngs=rngs), h)
    skip = z
    if stride != 1 or in_channels != out_channels:  # the projection shortcut: a node on the skip path
        skip = g.add(Projection(in_channels, out_channels, stride, method, rngs=rngs), z)
    return g.add(Add(activation), h, skip)  # z' = f(skip(z) + α·conv₂(g(conv₁(z))))


class Projection(nnx.Module):
    """The 1×1, strided, bias-free convolution of a projection shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, method: str, *, rngs: nnx.Rngs):
        self.conv = nnx.Conv(in_channels, out_channels, (1, 1), strides=stride, padding="SAME",
                             use_bias=False, rngs=rngs)
        self.activation = identity
        self.method = method

    def __call__(self, z: jax.Array) -> jax.Array:
        return apply_conv(self.conv, as_images(z), self.method)


def _block_plan(widths, blocks) -> list[tuple[int, int]]:
    """(width, stride) of each block: each stage after the first halves the image."""
    widths, blocks = tuple(int(w) for w in widths), tuple(int(b) for b in blocks)
    if len(blocks) == 1:
        blocks = blocks * len(widths)
    if not widths or len(blocks) != len(widths) or min(widths + blocks) < 1:
        raise NgfError(f"resnet widths {widths} and blocks {blocks} must be positive, one per stage")
    return [(w, 2 if s > 0 and b == 0 else 1) for s, (w, n) in enumerate(zip(widths, blocks)) for b in range(n)]


HEADS = ("flatten", "global")

#: He et al. (2016)'s CIFAR ResNet-20 layout (``resnet(..., **RESNET20)``; on the command line
#: ``--model resnet --model-opt stem=16 --model-opt widths=16,32,64 --model-opt blocks=3
#: --model-opt head=global --model-opt stem_pool=false``).
RESNET20 = {"stem": 16, "widths": (16, 32, 64), "blocks": (3, 3, 3), "head": "global", "stem_pool": False}


def resnet(input_shape, n_classes: int, *, rngs: nnx.Rngs, stem: int = 16, widths: tuple = (16, 32),
           blocks: tuple = (1, 1), activation: str = "relu", branch_scale: float = 1.0,
           head: str = "flatten", stem_pool: bool = True, conv_method: str = "xla", bias: bool = True) -> Graph:
    """A small residual network: stem conv (+ pool), residual stages, a dense head (``**RESNET20``: ResNet-20).

    Nodes: the stem, a 3×3 convolution whose map ends with 2×2 max pooling (unless
    ``stem_pool=false``); then three nodes per residual block (conv₁, conv₂, the sum),
    four with a projection shortcut; then a dense node to the logits, on the last
    block's flattened output or, with ``head=global``, on its global average. Every
    stage after the first starts with stride 2. Every activation is elementwise
    (docs/rules.md#notation). Images may be grey or colour ([H, W] or [H, W, C]) and of
    any size of at least 2×2.

    ``RESNET20`` is the option set of He et al.'s CIFAR ResNet-20: ``stem=16
    widths=16,32,64 blocks=3 head=global stem_pool=false`` (20 weighted layers and two
    projection shortcuts, no batch normalisation).

    Global pooling is not the default: its feedback is the same at every position,
    so under fa and lra each output channel's weights all moved one way and the
    activations grew without bound (lra on MNIST stayed at chance; bp learned slowly).

    Args:
      stem: output channels of the stem convolution.
      widths: channels of each stage, e.g. ``16,32,64``.
      blocks: residual blocks per stage, e.g. ``2,2`` (one number applies to every stage).
      activation: activation inside and after each block: relu, tanh, gelu, elu...
      branch_scale: α in z' = f(skip(z) + α·branch(z)) (small values start near the identity).
      head: ``flatten`` (dense layer on the last block's whole output) or ``global`` (on its spatial mean).
      stem_pool: end the stem with 2×2 max pooling (false: the blocks see the full image, as in ResNet-20).
      conv_method: how convolutions are computed: xla (lax.conv), patches (im2col) or shifts (the same map).
      bias: whether the stem, the blocks' convolutions and the head have a bias (the 1×1 projections never do).
    """
    act, bias = activation_by_name(activation), check_bias("resnet", bias)
    stem = number("resnet", "stem", stem, minimum=1, integer=True)
    branch_scale = number("resnet", "branch_scale", branch_scale)
    plan = _block_plan(widths, blocks)
    if head not in HEADS:
        raise NgfError(f"unknown resnet head {head!r}; valid heads: {', '.join(HEADS)}")
    height, width, depth = image_shape(input_shape)
    if min(height, width) < 2:
        raise NgfError(f"resnet needs images of at least 2×2, got {tuple(input_shape)}")
    check_conv_method(conv_method)
    g = GraphBuilder()
    stem_kind = PooledConv if stem_pool else Conv
    z = g.add(stem_kind(depth, int(stem), 3, act, method=conv_method, bias=bias, rngs=rngs))
    depth = int(stem)
    for out, stride in plan:
        z = residual_block(g, z, depth, out, act, stride=stride, branch_scale=float(branch_scale),
                           method=conv_method, bias=bias, rngs=rngs)
        depth = out
    if head == "global":
        g.add(Dense(depth, n_classes, pool=GlobalMeanPool(), bias=bias, rngs=rngs), z)
    else:
        shrink = 2 if stem_pool else 1
        height, width = _after_blocks(height // shrink, width // shrink, plan)
        g.add(Dense(height * width * depth, n_classes, bias=bias, rngs=rngs), z)
    return g.build()


def _after_blocks(height: int, width: int, plan) -> tuple[int, int]:
    """Image size after the blocks: a stride-2 SAME convolution rounds up."""
    for _, stride in plan:
        height, width = -(-height // stride), -(-width // stride)
    return height, width
