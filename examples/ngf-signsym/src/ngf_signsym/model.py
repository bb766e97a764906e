"""The model ``signsym-mlp``: an MLP whose hidden layers normalise before the nonlinearity.

Liao et al. 2016 found sign-symmetric feedback needs normalisation to train deep
networks well. Here it is parameter-free layer normalisation folded into each hidden
layer's activation f_l, so the rules' vector–Jacobian products carry the error
through it with no special case.
"""

from __future__ import annotations

import math

import jax
from flax import nnx

import ngf
from ngf.models import Dense, Sequential, activation_by_name

EPS = 1e-5


def standardised(activation):
    """f(h) = activation((h − mean(h)) / std(h)), over each example's features."""

    def f(h: jax.Array) -> jax.Array:
        centred = h - h.mean(axis=-1, keepdims=True)
        return activation(centred * jax.lax.rsqrt((centred**2).mean(axis=-1, keepdims=True) + EPS))

    return f


def signsym_mlp(input_shape, n_classes: int, *, rngs: nnx.Rngs, widths: tuple = (512, 512),
                activation: str = "relu") -> Sequential:
    """A fully connected network with standardised hidden pre-activations.

    Args:
      input_shape: shape of one example (flattened by the first layer).
      n_classes: number of outputs (logits).
      widths: hidden layer widths, e.g. ``256,256``.
      activation: hidden activation applied after standardising (see ``ngf models``).
    """
    widths = tuple(int(w) for w in widths)
    if not widths or any(w <= 0 for w in widths):
        raise ngf.NgfError(f"signsym-mlp widths must be positive integers, got {widths}")
    act = standardised(activation_by_name(activation))
    sizes = (math.prod(input_shape), *widths)
    layers = [Dense(a, b, act, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])]
    return Sequential([*layers, Dense(sizes[-1], n_classes, rngs=rngs)])
