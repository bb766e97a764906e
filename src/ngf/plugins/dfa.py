"""Direct Feedback Alignment (``dfa``), Nøkland 2016 (DESIGN.md §3)."""

import math
from typing import NamedTuple

import jax

from ngf.core.checks import number
from ngf.core.feedback import check_distribution, random_like
from ngf.core.hookspecs import hookimpl
from ngf.core.network import output_error, updates_from_deltas
from ngf.core.rule import LearningRule


class DFAState(NamedTuple):
    """Fixed random D_l of shape [size(z^l), n_classes] per hidden layer (the output layer has none)."""

    feedback: tuple


def direct_feedback(key, net, params, scale: float, dist: str) -> tuple:
    """One random D_l per hidden layer, sized from the trace's shapes at init."""
    shapes = net.trace_shapes(params)
    n_classes = shapes[-1].pre.shape[-1]
    like = [jax.ShapeDtypeStruct((math.prod(t.out.shape[1:]), n_classes), t.out.dtype) for t in shapes[:-1]]
    return tuple(random_like(key, like, scale, dist))


def dfa(scale: float = 1.0, dist: str = "normal") -> LearningRule:
    """Direct feedback alignment: the output error goes straight to every hidden layer.

    Args:
      scale: D's scale, in units of Glorot's standard deviation for a size(z^l) × n_classes matrix.
      dist: D's distribution, ``normal`` or ``uniform`` (same standard deviation).
    """
    check_distribution(dist)
    scale = number("dfa", "scale", scale, minimum=0, exclusive=True)

    def init(key, net, params):
        return DFAState(direct_feedback(key, net, params, scale, dist))

    def compute_targets(net, params, trace, labels, state):
        e = output_error(trace[-1].pre, labels)  # δ^L = e
        deltas = []
        for l, d in enumerate(state.feedback):
            # δ^l = f'(h^l) ⊙ reshape(D_l e): the vjp of f_l at h^l, so pooling needs no special case
            projected = (e @ d.T).reshape(trace[l].out.shape)
            deltas.append(net.activation_vjp(l, trace[l].pre, projected))
        return tuple(deltas) + (e,), state

    def local_update(net, params, trace, deltas, state):
        return updates_from_deltas(net, params, trace, deltas), state

    return LearningRule(init, compute_targets, local_update)


@hookimpl
def ngf_register_rules():
    """Register ``dfa``."""
    return {"dfa": dfa}
