"""The multilayer perceptron ``mlp``."""

from __future__ import annotations

import math

from flax import nnx

from ngf.core.errors import NgfError
from ngf.core.network import check_dropout
from ngf.models.layers import Dense, Sequential, activation_by_name, check_bias


def mlp(input_shape, n_classes: int, *, rngs: nnx.Rngs, widths: tuple = (512, 512),
        activation: str = "relu", bias: bool = True, dropout: float = 0.0) -> Sequential:
    """A fully connected network.

    Args:
      input_shape: shape of one example (flattened by the first layer).
      n_classes: number of outputs (logits).
      widths: hidden layer widths, e.g. ``256,256,256``; empty (``widths=``) for none.
      activation: hidden activation: tanh, relu, sigmoid, gelu, elu, leaky_relu, softplus, hard_sigmoid.
      bias: whether every layer has a bias (false: h = W·z, as PyTorch's ``bias=False``).
      dropout: P in [0, 1): training multiplies each hidden output by Bernoulli(1 − P)/(1 − P), one mask per step.
    """
    widths = tuple(int(w) for w in widths)
    if any(w <= 0 for w in widths):
        raise NgfError(f"mlp widths must be positive integers, got {widths}")
    act, bias = activation_by_name(activation), check_bias("mlp", bias)
    dropout = check_dropout("mlp", dropout)
    sizes = (math.prod(input_shape),) + widths
    layers = [Dense(a, b, act, bias=bias, dropout=dropout, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])]
    layers.append(Dense(sizes[-1], n_classes, bias=bias, rngs=rngs))
    return Sequential(layers)
