"""Models: NNX modules with a ``layers`` sequence, each layer a map plus an activation."""

from ngf.models.layers import ACTIVATIONS, Dense, Sequential, activation_by_name
from ngf.models.mlp import mlp

__all__ = ["ACTIVATIONS", "Dense", "Sequential", "activation_by_name", "mlp"]
