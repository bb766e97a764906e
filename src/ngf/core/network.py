"""A functional view of an NNX model as a graph of nodes (docs/rules.md#notation, #graph).

Node l reads u^l, the sum of the outputs of its parents P(l) (z^0 = x, written
``INPUT``), and maps it to a pre-activation h^l = a_l(θ_l, u^l) and an output
z^l = f_l(h^l). A chain (a model with a ``layers`` list and nothing else) is the
special case P(l) = {l−1}; a model with skips also has ``reads``, the parents of
each node (``ngf.models.graph.GraphBuilder`` builds one). The map a_l is whatever
the node module's ``__call__`` does: at most ONE map that mixes units (dense,
convolution...) plus parameter-free or elementwise parts, or nothing at all (a sum
node). f_l is its ``activation`` attribute, a differentiable function that keeps
h^l's shape. A node may start its map with a parameter-free ``pool``
(a_l(θ, u) = m_l(θ, p_l(u)): pooling, flattening); rules that skip nodes (dfa)
deliver their signal where the sole consumer's p reads. Every learning rule is
written with the vector–Jacobian products below and the backward walk of
``ngf.core.feedback``, so it works for every node type.

Dropout: a node whose module sets ``dropout`` = P > 0 is thinned in each training step.
The step draws one mask m^l per such node from its key, Bernoulli(1 − P) / (1 − P) in
z^l's shape (inverted dropout, torch's ``nn.Dropout``), and hands the rule the network
``thinned`` by them, whose f_l is m^l ⊙ f_l: every pass the rule runs in that step (the
engine's forward, pepita's second pass, a relaxation, a jvp) and every derivative it takes
see the same masks. Evaluation, ``predict`` and the alignment run the network unthinned.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from ngf.core.errors import NgfError
from ngf.core.losses import CE, Loss, cross_entropy, output_error  # noqa: F401 (ngf.cross_entropy, ngf.output_error)

Params = tuple  # one nnx.State of parameters per node
INPUT = -1  # the parent index that stands for the network's input x (z^0)
#: NNX modules that mix units: a node may hold at most one of them (docs/rules.md#graph).
MIXING_MODULES = (nnx.Linear, nnx.LinearGeneral, nnx.Einsum, nnx.Conv, nnx.ConvTranspose, nnx.Embed)
DROPOUT_STREAM = 0xD409  # folded into a step's key for its dropout masks, apart from the rule's own draws


class LayerTrace(NamedTuple):
    """What the forward pass recorded for one layer."""

    inputs: jax.Array  # u^l, the sum of the parents' outputs (z^{l-1} in a chain)
    pre: jax.Array  # h^l
    out: jax.Array  # z^l = f_l(h^l)


@dataclasses.dataclass(frozen=True, eq=False)
class Network:
    """Pure functions over per-node parameters of a model with a ``layers`` list (and ``reads``)."""

    graphdefs: tuple
    rests: tuple  # non-parameter state of each node (usually empty)
    activations: tuple
    input_shape: tuple | None = None  # shape of one example, when known
    pools: tuple = ()  # p_l, the parameter-free start of each node's map (None: none), from its ``pool``
    reads: tuple = ()  # P(l), the parents of each node (INPUT: x); () is the chain P(l) = {l−1}
    loss: Loss = CE  # L(h^L, y) and e = ∂L/∂h^L, which every rule reads (--loss; ngf.core.losses)
    dropouts: tuple = ()  # P_l, the chance that a training step drops a unit of z^l; () when every P_l = 0
    masks: tuple = ()  # m^l of one training step (None where P_l = 0), in a network ``thinned`` by them

    @classmethod
    def from_model(cls, model: nnx.Module, input_shape: tuple | None = None) -> tuple["Network", Params]:
        """Split ``model`` into a static ``Network`` and its per-node parameters.

        ``input_shape`` (one example's shape) lets rules size state by the trace. A node
        that holds two or more unit-mixing maps is refused unless it declares itself
        ``atomic`` (then it is trained by backprop inside, see ``atomic_layers``).
        """
        layers = getattr(model, "layers", None)
        if layers is None or len(layers) == 0:
            raise TypeError("an ngf model needs a non-empty `layers` sequence of NNX modules")
        reads = check_reads(getattr(model, "reads", None), len(layers))
        graphdefs, params, rests, acts = [], [], [], []
        for l, layer in enumerate(layers):
            check_one_mixing_map(l, layer)
            graphdef, theta, rest = nnx.split(layer, nnx.Param, ...)
            graphdefs.append(graphdef)
            params.append(theta)
            rests.append(rest)
            acts.append(getattr(layer, "activation", None) or identity)
        pools = tuple(p if callable(p := getattr(layer, "pool", None)) else None for layer in layers)
        drops = tuple(check_dropout(f"layer {l}", getattr(layer, "dropout", 0.0)) for l, layer in enumerate(layers))
        if drops[-1]:
            raise NgfError(f"layer {len(layers) - 1}, the output node, has dropout {drops[-1]}: only hidden nodes may")
        return cls(tuple(graphdefs), tuple(rests), tuple(acts), input_shape, pools, reads,
                   dropouts=drops if any(drops) else ()), tuple(params)

    @property
    def depth(self) -> int:
        """Number of nodes L."""
        return len(self.graphdefs)

    def parents(self, l: int) -> tuple:
        """P(l): the nodes whose outputs node l sums (``INPUT`` for x)."""
        return self.reads[l] if self.reads else (l - 1,)

    @functools.cached_property
    def _consumers(self) -> tuple:
        return tuple(tuple(c for c in range(self.depth) if k in self.parents(c)) for k in range(self.depth))

    def consumers(self, k: int) -> tuple:
        """The nodes that read node k's output, in topological order."""
        return self._consumers[k]

    def node_input(self, l: int, x: jax.Array, outs) -> jax.Array:
        """u^l = Σ_{k ∈ P(l)} z^k, with z^0 = x: what node l reads."""
        return sum_of_parents(self.parents(l), x, outs)

    def input_activation(self, l: int):
        """The activation that made node l's input: its sole parent's f (the identity for x or a sum)."""
        (k, *more) = self.parents(l)
        return identity if more or k == INPUT else self.activations[k]

    def pre_activation(self, l: int, theta: Any, z: jax.Array) -> jax.Array:
        """h^l = a_l(θ, z): layer l's own map, with whatever parameters θ are given."""
        return nnx.merge(self.graphdefs[l], theta, self.rests[l])(z)

    def forward(self, params: Params, x: jax.Array) -> tuple[jax.Array, tuple[LayerTrace, ...]]:
        """Run the network; return the logits h^L and the per-node trace."""
        trace, outs = [], []
        for l in range(self.depth):
            u = self.node_input(l, x, outs)  # u^l = Σ_{k ∈ P(l)} z^k
            h = self.pre_activation(l, params[l], u)
            outs.append(self.activations[l](h))
            trace.append(LayerTrace(u, h, outs[-1]))
        return trace[-1].pre, tuple(trace)

    def thinned(self, params: Params, x: jax.Array, key: jax.Array) -> "Network":
        """This network with one training step's dropout masks, drawn from the step's ``key`` for the
        batch ``x``: f_l becomes m^l ⊙ f_l, m^l ~ Bernoulli(1 − P_l) / (1 − P_l) (itself without dropout)."""
        if not self.dropouts or self.masks:
            return self
        shapes = jax.eval_shape(lambda p, inp: self.forward(p, inp)[1], params, x)
        key = jax.random.fold_in(key, DROPOUT_STREAM)
        masks = tuple(None if not p else jnp.where(  # inverted dropout: kept units scaled by 1/(1 − P)
            jax.random.bernoulli(jax.random.fold_in(key, l), 1.0 - p, shapes[l].out.shape), 1.0 / (1.0 - p),
            0.0).astype(shapes[l].out.dtype) for l, p in enumerate(self.dropouts))
        acts = tuple(f if m is None else Dropped(f, m, l) for l, (f, m) in enumerate(zip(self.activations, masks)))
        return dataclasses.replace(self, activations=acts, masks=masks)

    def trace_shapes(self, params: Params, batch: int = 1):
        """Shapes and dtypes of the trace for a batch (needs ``input_shape``)."""
        if self.input_shape is None:
            raise ValueError("this Network was built without input_shape")
        wide = any(leaf.dtype == jnp.float64 for leaf in jax.tree.leaves(params))  # float64 parameters
        x = jax.ShapeDtypeStruct((batch,) + tuple(self.input_shape), jnp.float64 if wide else jnp.float32)
        plain = dataclasses.replace(self, activations=tuple(f.activation if isinstance(f, Dropped) else f
                                                               for f in self.activations))
        return jax.eval_shape(lambda p, inp: plain.forward(p, inp)[1], params, x)  # masks keep shapes

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

    def read_pool(self, k: int):
        """The ``pool`` through which node k's output is read: its sole consumer's, if that reads k alone."""
        readers = self.consumers(k)
        if len(readers) != 1 or len(self.parents(readers[0])) != 1:
            return None
        return self.pools[readers[0]] if readers[0] < len(self.pools) else None

    def read_output(self, k: int, z: jax.Array) -> jax.Array:
        """What the parameters downstream of node k read of its output z (z itself without a pool)."""
        pool = self.read_pool(k)
        return z if pool is None else pool(z)

    def read_vjp(self, k: int, z: jax.Array, v: jax.Array) -> jax.Array:
        """The vjp of ``read_output`` at z: v, given where it reads (any shape of that size), in z's shape."""
        read, pullback = jax.vjp(lambda out: self.read_output(k, out), z)
        return pullback(v.reshape(read.shape))[0]

    def activation_vjp(self, l: int, h: jax.Array, v: jax.Array) -> jax.Array:
        """f_l'(h) ⊙ v, or the general vector–Jacobian product of f_l at h."""
        _, pullback = jax.vjp(self.activations[l], h)
        return pullback(v)[0]

    def to_model(self, params: Params) -> list:
        """Rebuild the node modules from parameters (for inspection or export)."""
        return [nnx.merge(g, p, r) for g, p, r in zip(self.graphdefs, params, self.rests)]


def check_dropout(owner: str, p) -> float:
    """P checked to be a probability in [0, 1): the chance that a training step drops a unit (0: none)."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p < 1:
        raise NgfError(f"{owner} option dropout must be a probability in [0, 1), got {p!r}")
    return float(p)


class MaskMismatch(NgfError):
    """A rule ran a thinned node on other examples than its step's batch (the step names the rule)."""


@dataclasses.dataclass(frozen=True, eq=False)
class Dropped:
    """f̃_l(h) = m^l ⊙ f_l(h): node l's activation with its step's dropout mask; ``used`` records a call."""

    activation: Callable
    mask: jax.Array
    node: int
    used: list = dataclasses.field(default_factory=list)

    def __call__(self, h: jax.Array) -> jax.Array:
        if h.shape != self.mask.shape:
            raise MaskMismatch(f"it runs node {self.node} on {tuple(h.shape)} where the step's dropout mask is "
                               f"{tuple(self.mask.shape)}: on other examples than the batch, where the step's masks "
                               "(one per example) do not apply; set dropout to 0")
        self.used.append(True)
        return self.activation(h) * self.mask


def sum_of_parents(parents: tuple, x: jax.Array, outs) -> jax.Array:
    """Σ_{k ∈ parents} z^k, where ``INPUT`` stands for x and ``outs[k]`` is z^k."""
    return functools.reduce(jnp.add, [x if k == INPUT else outs[k] for k in parents])


def check_reads(reads, depth: int) -> tuple:
    """Validate a model's ``reads``: each node reads earlier nodes or ``INPUT``, every node but the last is read."""
    if reads is None:
        return ()
    reads = tuple(tuple(int(k) for k in (r if isinstance(r, (tuple, list)) else (r,))) for r in reads)
    if len(reads) != depth:
        raise NgfError(f"the model's reads lists {len(reads)} nodes' parents but it has {depth} layers")
    for l, parents in enumerate(reads):
        if not parents or any(not INPUT <= k < l for k in parents) or len(set(parents)) != len(parents):
            earlier = f"distinct earlier nodes (0..{l - 1}) or " if l else ""
            raise NgfError(f"node {l} reads {parents}: it may read {earlier}the input ({INPUT})")
    unread = [k for k in range(depth - 1) if not any(k in r for r in reads)]
    if unread:
        raise NgfError(f"the output of node {unread[0]} is never read: every node but the last must feed another")
    return reads


def mixing_maps(layer: nnx.Module) -> list[str]:
    """Paths of the unit-mixing maps inside ``layer`` (NNX's dense and convolution modules, and any
    module whose class sets ``ngf_mixes_units = True``, counted once with what it holds)."""
    found = []
    for path, node in sorted(nnx.iter_graph(layer), key=lambda item: len(item[0])):  # outer modules first
        path = tuple(path)
        if not isinstance(node, nnx.Module) or any(path[:len(p)] == p for p in found):
            continue
        if isinstance(node, MIXING_MODULES) or getattr(type(node), "ngf_mixes_units", False):
            found.append(path)
    return [".".join(str(part) for part in p) or "(the layer itself)" for p in found]


def is_atomic(layer: nnx.Module) -> bool:
    """Whether a layer declares itself atomic (``atomic = True``): trained by backprop inside."""
    return bool(getattr(layer, "atomic", False))


def check_one_mixing_map(l: int, layer: nnx.Module) -> None:
    """Refuse a node with two or more unit-mixing maps, unless it is declared atomic (docs/rules.md#graph)."""
    maps = mixing_maps(layer)
    if len(maps) > 1 and not is_atomic(layer):
        raise NgfError(f"layer {l} ({type(layer).__name__}) holds {len(maps)} unit-mixing maps "
                       f"({', '.join(maps)}): make each its own node (ngf.models.graph.GraphBuilder, "
                       f"docs/plugins.md), or set `atomic = True` on the layer to train it by backprop inside")


def atomic_layers(model: nnx.Module) -> list[str]:
    """``"layer 2 (Block)"`` for each layer of ``model`` declared atomic with two or more mixing maps."""
    return [f"layer {l} ({type(layer).__name__})" for l, layer in enumerate(getattr(model, "layers", ()))
            if is_atomic(layer) and len(mixing_maps(layer)) > 1]


def identity(x: jax.Array) -> jax.Array:
    """The identity activation (used for the output layer's logits)."""
    return x


def updates_from_deltas(net: Network, params: Params, trace, deltas) -> Params:
    """Per-node updates from per-example signals δ^l, averaged over the batch (§2)."""
    batch = trace[0].inputs.shape[0]
    return tuple(
        net.param_vjp(l, params[l], trace[l].inputs, deltas[l] / batch) for l in range(net.depth)
    )
