"""Direct Random Target Projection (``drtp``), Frenkel, Lefebvre and Bol 2021 (docs/rules.md#drtp).

``dfa`` with the output error replaced by the label alone: every hidden node gets
δ^l = f'(h^l) ⊙ pᵀ(D_l (−onehot(y))), where D_l is a fixed random matrix and p the
pooling through which z^l is read (as in ``dfa``). The target is known before the
output is computed, so no error has to travel back at all. The output node learns
from e = ∂L/∂h^L.

Locality: a hidden node's signal reads no weight but its own D_l and the label.
"""

import jax

from ngf.core.checks import number
from ngf.core.feedback import check_distribution
from ngf.core.network import updates_from_deltas
from ngf.core.rule import LearningRule
from ngf.host.hookspecs import hookimpl
from ngf.plugins.dfa import DFAState, direct_feedback, direct_signals


def drtp(scale: float = 1.0, dist: str = "normal") -> LearningRule:
    """Direct random target projection: the label, projected at random, is each hidden node's signal.

    Args:
      scale: D's scale, in units of Glorot's standard deviation for a size(z^l) × n_classes matrix.
      dist: D's distribution, ``normal`` or ``uniform`` (same standard deviation).
    """
    check_distribution(dist, "drtp option dist")
    scale = number("drtp", "scale", scale, minimum=0, exclusive=True)

    def init(key, net, params):
        return DFAState(direct_feedback(key, net, params, scale, dist))

    def compute_targets(net, params, trace, labels, state):
        e = net.loss.error(trace[-1].pre, labels)  # the output node: δ^L = e
        target = -jax.nn.one_hot(labels, e.shape[-1], dtype=e.dtype)  # −onehot(y), in place of e
        # δ^l = f'(h^l) ⊙ pᵀ(D_l (−onehot(y))) for every hidden node
        return direct_signals(net, trace, state.feedback, target) + (e,), state

    def local_update(net, params, trace, deltas, state):
        return updates_from_deltas(net, params, trace, deltas), state

    return LearningRule(init, compute_targets, local_update)


@hookimpl
def ngf_register_rules():
    """Register ``drtp``."""
    return {"drtp": drtp}
