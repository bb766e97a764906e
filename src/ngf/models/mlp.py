"""The multilayer perceptron ``mlp``."""

from __future__ import annotations

import math

from flax import nnx

from ngf.core.errors import NgfError
from ngf.models.layers import Dense, Sequential, activation_by_name


def mlp(input_shape, n_classes: int, *, rngs: nnx.Rngs, widths: tuple = (512, 512),
        activation: str = "relu") -> Sequential:
    """A fully connected network.

    Args:
      input_shape: shape of one example (flattened by the first layer).
      n_classes: number of outputs (logits).
      widths: hidden layer widths, e.g. ``256,256,256``.
      activation: hidden activation: tanh, relu, sigmoid, gelu, elu, leaky_relu, softplus, hard_sigmoid.
    """
    widths = tuple(int(w) for w in widths)
    if any(w <= 0 for w in widths):
        raise NgfError(f"mlp widths must be positive integers, got {widths}")
    act = activation_by_name(activation)
    sizes = (math.prod(input_shape),) + widths
    layers = [Dense(a, b, act, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])]
    layers.append(Dense(sizes[-1], n_classes, rngs=rngs))
    return Sequential(layers)
