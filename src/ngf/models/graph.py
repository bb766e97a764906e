"""Models with skip connections: a graph of nodes, built one node at a time (docs/rules.md#graph).

A chain needs nothing of this: a ``Sequential`` of layers is the graph in which each
node reads the one before it. A model with skips lists its nodes in topological order
and, for each, the nodes whose outputs it sums:

    g = GraphBuilder()
    z = g.add(Conv(1, 16, 3, relu, rngs=rngs))               # reads the input
    h = g.add(Conv(16, 16, 3, relu, rngs=rngs), z)
    h = g.add(Conv(16, 16, 3, rngs=rngs), h)                 # identity activation
    z = g.add(Add(relu), h, z)                               # z ↦ f(z + conv₂(g(conv₁(z))))
    g.add(Dense(28 * 28 * 16, 10, rngs=rngs), z)
    model = g.build()

Each node holds at most one map that mixes units; ``Add`` holds none.
"""

from __future__ import annotations

import jax
from flax import nnx

from ngf.core.network import INPUT, check_reads, identity, sum_of_parents


class Add(nnx.Module):
    """A node without weights: h = u, the sum of its parents' outputs; z = f(h)."""

    def __init__(self, activation=identity):
        self.activation = activation

    def __call__(self, u: jax.Array) -> jax.Array:
        return u


class Graph(nnx.Module):
    """Nodes in topological order; node l reads the sum of the outputs of ``reads[l]`` (``INPUT``: x).

    The last node's pre-activation is the model's output (the logits).
    """

    def __init__(self, layers, reads):
        self.layers = nnx.List(layers)
        self.reads = check_reads(reads, len(layers))

    def __call__(self, x: jax.Array) -> jax.Array:
        outs = []
        for layer, parents in zip(self.layers, self.reads):
            u = sum_of_parents(parents, x, outs)  # u^l = Σ_{k ∈ P(l)} z^k
            outs.append(layer.activation(layer(u)))
        return outs[-1]


class GraphBuilder:
    """Adds nodes one at a time; ``add`` returns the handle later nodes read the node by."""

    input = INPUT  # the handle of the network's input x

    def __init__(self):
        self.layers, self.reads = [], []

    def add(self, layer: nnx.Module, *reads: int) -> int:
        """Append ``layer`` reading the sum of ``reads`` (default: the node added last, or the input)."""
        if not reads:
            reads = (len(self.layers) - 1,)  # -1 is INPUT for the first node
        self.layers.append(layer)
        self.reads.append(tuple(reads))
        return len(self.layers) - 1

    def build(self) -> Graph:
        """The model: a ``Graph`` of the nodes added."""
        return Graph(self.layers, self.reads)
