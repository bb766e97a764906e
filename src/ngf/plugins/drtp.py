"""Direct Random Target Projection (``drtp``), Frenkel, Lefebvre and Bol 2021 (docs/rules.md#drtp).

``dfa`` with the output error replaced by the label alone: every hidden node gets
δ^l = f'(h^l) ⊙ pᵀ(D_l (−onehot(y))), where D_l is a fixed random matrix and p the
pooling through which z^l is read (as in ``dfa``). The target is known before the
output is computed, so no error has to travel back at all. The output node learns
from e = ∂L/∂h^L.

Where the signal lands on a node whose output is pooled before it is read
(``placement``): ``read`` (the default) sizes D_l to the pooled output and sends
D_l s back through the pooling to its winners, as ``dfa``; ``output`` sizes D_l to
z^l itself and delivers D_l s at every position, then f', as the authors' code does
(``CNN_block`` in ChFrenkel/DirectRandomTargetProjection ``models.py``: conv → act →
hook → pool, its D shaped [C, channels, H, W]). On a node read without pooling (every
node of an mlp) the two are the same.

Locality: a hidden node's signal reads no weight but its own D_l and the label.
"""

import jax

from ngf.core.checks import number
from ngf.core.feedback import check_distribution
from ngf.core.rule import LearningRule
from ngf.host.hookspecs import hookimpl
from ngf.plugins.dfa import DFAState, check_placement, direct_feedback, direct_signals


def drtp(scale: float = 1.0, dist: str = "normal", placement: str = "read") -> LearningRule:
    """Direct random target projection: the label, projected at random, is each hidden node's signal.

    Args:
      scale: D's scale, in units of Glorot's standard deviation for a size × n_classes matrix.
      dist: D's distribution, ``normal`` or ``uniform`` (same standard deviation).
      placement: where D_l(−onehot(y)) lands on a node whose output is pooled before it is read:
        ``read`` (D_l sized to the pooled output, sent to the pooling's winners) or ``output``
        (D_l sized to z^l, every position, as the authors' code); the same on an mlp.
    """
    check_distribution(dist, "drtp option dist")
    scale = number("drtp", "scale", scale, minimum=0, exclusive=True)
    placement = check_placement(placement, "drtp")

    def init(key, net, params):
        return DFAState(direct_feedback(key, net, params, scale, dist, placement))

    def compute_targets(net, params, trace, labels, state):
        e = net.loss.error(trace[-1].pre, labels)  # the output node: δ^L = e
        target = -jax.nn.one_hot(labels, e.shape[-1], dtype=e.dtype)  # −onehot(y), in place of e
        # δ^l = f'(h^l) ⊙ pᵀ(D_l (−onehot(y))) (read), or f'(h^l) ⊙ D_l (−onehot(y)) (output)
        return direct_signals(net, trace, state.feedback, target, placement) + (e,), state

    return LearningRule(init, compute_targets)


@hookimpl
def ngf_register_rules():
    """Register ``drtp``."""
    return {"drtp": drtp}
