"""Models: NNX modules with a ``layers`` sequence of nodes, each a map plus an activation.

A chain is a ``Sequential``; a model with skips is a ``Graph`` (``GraphBuilder``). The layers
(dense, convolution, pooling) and the built-in models ``mlp``, ``cnn`` and ``resnet`` live here.
"""

from ngf.models.graph import Add, Graph, GraphBuilder
from ngf.models.layers import ACTIVATIONS, Dense, Sequential, activation_by_name
from ngf.models.mlp import mlp

__all__ = ["ACTIVATIONS", "Add", "Dense", "Graph", "GraphBuilder", "Sequential", "activation_by_name", "mlp"]
