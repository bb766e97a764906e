"""The residual network ``resnet``: normalisation-free, sized for 28×28 images.

A residual block is ONE layer whose map is a_l(θ, z) = skip(z) + α·branch(θ, z)
(He et al. 2016, without batch normalisation). So J_l^T(B, δ) with substituted
weights B is the skip path's transpose plus α times the branch's feedback, and
every rule handles a block the way it handles any layer (DESIGN.md §2).
"""

from __future__ import annotations

from flax import nnx

from ngf.core.checks import number
from ngf.core.errors import NgfError
from ngf.models.cnn import image_shape
from ngf.models.conv import Conv, GlobalMeanPool, MaxPool, apply_conv, as_images, check_conv_method, pooled
from ngf.models.layers import Dense, Sequential, activation_by_name


class ResidualBlock(nnx.Module):
    """h = skip(u) + α·conv₂(g(conv₁(u))), u = pool(z): identity skip, or a 1×1 projection when shapes change."""

    def __init__(self, in_channels: int, out_channels: int, activation, *, stride: int = 1,
                 branch_scale: float = 1.0, pool=None, method: str = "xla", rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(in_channels, out_channels, (3, 3), strides=stride, padding="SAME", rngs=rngs)
        self.conv2 = nnx.Conv(out_channels, out_channels, (3, 3), padding="SAME", rngs=rngs)
        project = None
        if stride != 1 or in_channels != out_channels:
            project = nnx.Conv(in_channels, out_channels, (1, 1), strides=stride, padding="SAME",
                               use_bias=False, rngs=rngs)
        self.project = nnx.data(project)
        self.inner = activation  # g, inside the branch: part of the map a_l
        self.activation = activation  # f_l, after the sum
        self.branch_scale = branch_scale
        self.pool = pool  # input pooling, the first part of a_l (None: none)
        self.method = check_conv_method(method)  # how each convolution is computed (convolve)

    def skip(self, z):
        """The shortcut: z itself, or its 1×1 projection."""
        return z if self.project is None else apply_conv(self.project, z, self.method)

    def __call__(self, z):
        u = pooled(self.pool, as_images(z))
        # a_l(θ, z) = skip(u) + α·branch(θ, u), u = pool(z)
        branch = apply_conv(self.conv2, self.inner(apply_conv(self.conv1, u, self.method)), self.method)
        return self.skip(u) + self.branch_scale * branch


def _block_plan(widths, blocks) -> list[tuple[int, int]]:
    """(width, stride) of each block: each stage after the first halves the image."""
    widths, blocks = tuple(int(w) for w in widths), tuple(int(b) for b in blocks)
    if len(blocks) == 1:
        blocks = blocks * len(widths)
    if not widths or len(blocks) != len(widths) or min(widths + blocks) < 1:
        raise NgfError(f"resnet widths {widths} and blocks {blocks} must be positive, one per stage")
    return [(w, 2 if s > 0 and b == 0 else 1) for s, (w, n) in enumerate(zip(widths, blocks)) for b in range(n)]


HEADS = ("flatten", "global")


def resnet(input_shape, n_classes: int, *, rngs: nnx.Rngs, stem: int = 16, widths: tuple = (16, 32),
           blocks: tuple = (1, 1), activation: str = "relu", branch_scale: float = 1.0,
           head: str = "flatten", conv_method: str = "xla") -> Sequential:
    """A small residual network: stem conv + pool, residual stages, a dense head.

    Layers: a stem 3×3 conv; then one layer per residual block, the first of which
    max-pools its input 2×2; then a dense layer to the logits, on the last block's
    flattened output or, with ``head=global``, on its global average. Pooling is
    the start of a layer's map, so every activation is elementwise (DESIGN.md §2).
    Every stage after the first starts with stride 2.

    Global pooling is not the default: its feedback is the same at every position,
    so under fa and lra each output channel's weights all moved one way and the
    activations grew without bound (lra on MNIST stayed at chance; bp learned slowly).

    Args:
      stem: output channels of the stem convolution.
      widths: channels of each stage, e.g. ``16,32,64``.
      blocks: residual blocks per stage, e.g. ``2,2`` (one number applies to every stage).
      activation: activation inside and after each block: relu, tanh, gelu, elu...
      branch_scale: α in h = skip(z) + α·branch(z) (small values start near the identity).
      head: ``flatten`` (dense layer on the last block's whole output) or ``global`` (on its spatial mean).
      conv_method: how convolutions are computed: xla (lax.conv), patches (im2col) or shifts (the same map).
    """
    act = activation_by_name(activation)
    stem = number("resnet", "stem", stem, minimum=1, integer=True)
    branch_scale = number("resnet", "branch_scale", branch_scale)
    plan = _block_plan(widths, blocks)
    if head not in HEADS:
        raise NgfError(f"unknown resnet head {head!r}; valid heads: {', '.join(HEADS)}")
    height, width, depth = image_shape(input_shape)
    if min(height, width) < 2:
        raise NgfError(f"resnet needs images of at least 2×2, got {tuple(input_shape)}")
    check_conv_method(conv_method)
    layers = [Conv(depth, int(stem), 3, act, method=conv_method, rngs=rngs)]
    depth = int(stem)
    for i, (out, stride) in enumerate(plan):
        layers.append(ResidualBlock(depth, out, act, stride=stride, branch_scale=float(branch_scale),
                                    pool=MaxPool(2) if i == 0 else None, method=conv_method, rngs=rngs))
        depth = out
    if head == "global":
        layers.append(Dense(depth, n_classes, pool=GlobalMeanPool(), rngs=rngs))
    else:
        height, width = _after_blocks(height // 2, width // 2, plan)
        layers.append(Dense(height * width * depth, n_classes, rngs=rngs))
    return Sequential(layers)


def _after_blocks(height: int, width: int, plan) -> tuple[int, int]:
    """Image size after the blocks: a stride-2 SAME convolution rounds up."""
    for _, stride in plan:
        height, width = -(-height // stride), -(-width // stride)
    return height, width
