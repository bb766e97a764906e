"""Direct Feedback Alignment (``dfa``), Nøkland 2016 (docs/rules.md#dfa)."""

import math
from typing import NamedTuple

import jax

from ngf.core.checks import number
from ngf.core.errors import NgfError
from ngf.core.feedback import check_distribution, random_like
from ngf.core.rule import LearningRule
from ngf.host.hookspecs import hookimpl


class DFAState(NamedTuple):
    """Fixed random D_l of shape [size(p(z^l)), n_classes] per hidden node (the output node has none).

    p is the pooling through which z^l is read (``Network.read_output``), the identity
    unless the node's sole consumer pools what it reads; under ``placement="output"``
    (``drtp``) D_l is [size(z^l), n_classes].
    """

    feedback: tuple


#: where D_l s lands on node l (``drtp``'s option ``placement``): ``read``, where the parameters
#: downstream read z^l (for a pooling p, its winners); ``output``, all of z^l, at every position
PLACEMENTS = ("read", "output")


def check_placement(placement: str, owner: str) -> str:
    """Validate a placement name (``PLACEMENTS``); ``owner`` (``"drtp"``) starts the message."""
    if placement not in PLACEMENTS:
        raise NgfError(f"{owner} option placement: unknown placement {placement!r}; "
                       f"valid placements: {', '.join(PLACEMENTS)}")
    return placement


def read_shapes(net, params) -> list:
    """The shape of p(z^l), what the parameters downstream of node l read of z^l, for each hidden node."""
    shapes = net.trace_shapes(params)
    return [jax.eval_shape(lambda z, l=l: net.read_output(l, z), t.out) for l, t in enumerate(shapes[:-1])]


def signal_shapes(net, params, placement: str = "read") -> list:
    """Where D_l s lands on each hidden node: p(z^l)'s shape (``read``) or z^l's (``output``)."""
    if placement == "output":
        return [t.out for t in net.trace_shapes(params)[:-1]]
    return read_shapes(net, params)


def direct_feedback(key, net, params, scale: float, dist: str, placement: str = "read") -> tuple:
    """One random D_l per hidden node, [size of where its signal lands, n_classes], sized from the trace at init."""
    n_classes = net.trace_shapes(params)[-1].pre.shape[-1]
    like = [jax.ShapeDtypeStruct((math.prod(r.shape[1:]), n_classes), r.dtype)
            for r in signal_shapes(net, params, placement)]
    return tuple(random_like(key, like, scale, dist))


def landed(net, l: int, z: jax.Array, v: jax.Array, placement: str) -> jax.Array:
    """D_l s in z^l's shape: pᵀ(v) through the vjp of the read (``read``), or v itself reshaped (``output``)."""
    return v.reshape(z.shape) if placement == "output" else net.read_vjp(l, z, v)


def direct_signals(net, trace, feedback: tuple, signal: jax.Array, placement: str = "read") -> tuple:
    """δ^l = f'(h^l) ⊙ pᵀ(D_l s) for every hidden node l, given a per-example signal s (dfa: e).

    ``read``: D_l s lands where z^l is read (for a pooling p, the max positions; the whole of
    z^l when it has none). ``output``: δ^l = f'(h^l) ⊙ D_l s over all of z^l (p is skipped).
    No other node's weight is read.
    """
    return tuple(net.activation_vjp(l, trace[l].pre, landed(net, l, trace[l].out, signal @ d.T, placement))
                 for l, d in enumerate(feedback))


def dfa(scale: float = 1.0, dist: str = "normal") -> LearningRule:
    """Direct feedback alignment: the output error goes straight to every hidden node.

    Args:
      scale: D's scale, in units of Glorot's standard deviation for a size(z^l) × n_classes matrix.
      dist: D's distribution, ``normal`` or ``uniform`` (same standard deviation).
    """
    check_distribution(dist, "dfa option dist")
    scale = number("dfa", "scale", scale, minimum=0, exclusive=True)

    def init(key, net, params):
        return DFAState(direct_feedback(key, net, params, scale, dist))

    def compute_targets(net, params, trace, labels, state):
        e = net.loss.error(trace[-1].pre, labels)  # δ^L = e
        return direct_signals(net, trace, state.feedback, e) + (e,), state

    return LearningRule(init, compute_targets)


@hookimpl
def ngf_register_rules():
    """Register ``dfa``."""
    return {"dfa": dfa}
