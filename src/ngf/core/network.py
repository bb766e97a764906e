"""A functional view of an NNX model as a sequence of layers (DESIGN.md §2).

Layer l maps its input z^{l-1} to a pre-activation h^l = a_l(θ_l, z^{l-1}) and an
output z^l = f_l(h^l). The map a_l is whatever the layer module's ``__call__`` does
(dense, convolution, a residual block...); f_l is its ``activation`` attribute, a
differentiable function that keeps h^l's shape. A layer may start its map with a
parameter-free ``pool`` (a_l(θ, z) = m_l(θ, p_l(z)): pooling, flattening); rules that
skip layers (dfa) deliver their signal where p_{l+1} reads. Every learning rule is
written with the vector–Jacobian products below, so it works for every layer type.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

Params = tuple  # one nnx.State of parameters per layer


class LayerTrace(NamedTuple):
    """What the forward pass recorded for one layer."""

    inputs: jax.Array  # z^{l-1}
    pre: jax.Array  # h^l
    out: jax.Array  # z^l = f_l(h^l)


@dataclasses.dataclass(frozen=True, eq=False)
class Network:
    """Pure functions over per-layer parameters of a model with a ``layers`` list."""

    graphdefs: tuple
    rests: tuple  # non-parameter state of each layer (usually empty)
    activations: tuple
    input_shape: tuple | None = None  # shape of one example, when known
    pools: tuple = ()  # p_l, the parameter-free start of each layer's map (None: none), from its ``pool``

    @classmethod
    def from_model(cls, model: nnx.Module, input_shape: tuple | None = None) -> tuple["Network", Params]:
        """Split ``model`` into a static ``Network`` and its per-layer parameters.

        ``input_shape`` (one example's shape) lets rules size state by the trace.
        """
        layers = getattr(model, "layers", None)
        if layers is None or len(layers) == 0:
            raise TypeError("an ngf model needs a non-empty `layers` sequence of NNX modules")
        graphdefs, params, rests, acts = [], [], [], []
        for layer in layers:
            graphdef, theta, rest = nnx.split(layer, nnx.Param, ...)
            graphdefs.append(graphdef)
            params.append(theta)
            rests.append(rest)
            acts.append(getattr(layer, "activation", None) or identity)
        pools = tuple(p if callable(p := getattr(layer, "pool", None)) else None for layer in layers)
        return cls(tuple(graphdefs), tuple(rests), tuple(acts), input_shape, pools), tuple(params)

    @property
    def depth(self) -> int:
        """Number of layers L."""
        return len(self.graphdefs)

    def pre_activation(self, l: int, theta: Any, z: jax.Array) -> jax.Array:
        """h^l = a_l(θ, z): layer l's own map, with whatever parameters θ are given."""
        return nnx.merge(self.graphdefs[l], theta, self.rests[l])(z)

    def forward(self, params: Params, x: jax.Array) -> tuple[jax.Array, tuple[LayerTrace, ...]]:
        """Run the network; return the logits h^L and the per-layer trace."""
        trace, z = [], x
        for l in range(self.depth):
            h = self.pre_activation(l, params[l], z)
            out = self.activations[l](h)
            trace.append(LayerTrace(z, h, out))
            z = out
        return trace[-1].pre, tuple(trace)

    def trace_shapes(self, params: Params, batch: int = 1):
        """Shapes and dtypes of the trace for a batch (needs ``input_shape``)."""
        if self.input_shape is None:
            raise ValueError("this Network was built without input_shape")
        x = jax.ShapeDtypeStruct((batch,) + tuple(self.input_shape), jnp.float32)
        return jax.eval_shape(lambda p, inp: self.forward(p, inp)[1], params, x)

    def logits(self, params: Params, x: jax.Array) -> jax.Array:
        """The logits h^L only."""
        return self.forward(params, x)[0]

    def input_vjp(self, l: int, theta: Any, z: jax.Array, delta: jax.Array) -> jax.Array:
        """J_l^T(θ, δ): vector–Jacobian product of a_l w.r.t. its input, at z, with θ (§2)."""
        _, pullback = jax.vjp(lambda inp: self.pre_activation(l, theta, inp), z)
        return pullback(delta)[0]

    def input_jvp(self, l: int, theta: Any, z: jax.Array, r: jax.Array) -> jax.Array:
        """J_l(θ)·r: the Jacobian–vector product of a_l w.r.t. its input, at z, with θ."""
        return jax.jvp(lambda inp: self.pre_activation(l, theta, inp), (z,), (r,))[1]

    def param_vjp(self, l: int, theta: Any, z: jax.Array, delta: jax.Array) -> Any:
        """∇θ_l = vjp_θ a_l(θ_l, z^{l-1})(δ^l): the local update of layer l (§2)."""
        _, pullback = jax.vjp(lambda th: self.pre_activation(l, th, z), theta)
        return pullback(delta)[0]

    def pooled_input(self, l: int, z: jax.Array) -> jax.Array:
        """p_l(z): what the parameters of layer l read of its input z (z itself without a ``pool``)."""
        pool = self.pools[l] if l < len(self.pools) else None
        return z if pool is None else pool(z)

    def pool_vjp(self, l: int, z: jax.Array, v: jax.Array) -> jax.Array:
        """The vjp of p_l at z: v, given where layer l reads (any shape of that size), sent back to z's shape."""
        read, pullback = jax.vjp(lambda inp: self.pooled_input(l, inp), z)
        return pullback(v.reshape(read.shape))[0]

    def activation_vjp(self, l: int, h: jax.Array, v: jax.Array) -> jax.Array:
        """f_l'(h) ⊙ v, or the general vector–Jacobian product of f_l at h."""
        _, pullback = jax.vjp(self.activations[l], h)
        return pullback(v)[0]

    def to_model(self, params: Params) -> list:
        """Rebuild the layer modules from parameters (for inspection or export)."""
        return [nnx.merge(g, p, r) for g, p, r in zip(self.graphdefs, params, self.rests)]


def identity(x: jax.Array) -> jax.Array:
    """The identity activation (used for the output layer's logits)."""
    return x


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example cross-entropy of softmax(logits) against integer labels."""
    logp = jax.nn.log_softmax(logits)
    return -jnp.take_along_axis(logp, labels[:, None], axis=-1)[:, 0]


def output_error(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example e = ∂CE/∂h^L = softmax(h^L) − onehot(y)."""
    return jax.nn.softmax(logits) - jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)


def updates_from_deltas(net: Network, params: Params, trace, deltas) -> Params:
    """Per-layer updates from per-example signals δ^l, averaged over the batch (§2)."""
    batch = trace[0].inputs.shape[0]
    return tuple(
        net.param_vjp(l, params[l], trace[l].inputs, deltas[l] / batch) for l in range(net.depth)
    )
