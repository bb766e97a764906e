"""Feedback Alignment (``fa``), Lillicrap et al. 2016 (docs/rules.md#fa)."""

from typing import NamedTuple

from ngf.core.checks import number
from ngf.core.feedback import check_distribution, layer_feedback, propagate_errors
from ngf.core.rule import LearningRule
from ngf.host.hookspecs import hookimpl


class FAState(NamedTuple):
    """Fixed random feedback weights B_l of θ_l's shape, one per layer l ≥ 2 (None for the first)."""

    feedback: tuple


def fa(scale: float = 1.0, dist: str = "normal") -> LearningRule:
    """Feedback alignment: backprop's walk down the network with fixed random weights.

    Args:
      scale: B's scale, in units of Glorot's standard deviation for θ_l's shape.
      dist: B's distribution, ``normal`` or ``uniform`` (same standard deviation).
    """
    check_distribution(dist, "fa option dist")
    scale = number("fa", "scale", scale, minimum=0, exclusive=True)

    def init(key, net, params):
        return FAState(layer_feedback(key, params, scale, dist))

    def compute_targets(net, params, trace, labels, state):
        e = net.loss.error(trace[-1].pre, labels)  # δ^L = e
        # δ^{l-1} = f'(h^{l-1}) ⊙ J_l^T(B_l, δ^l): no forward weight is read on the way down
        return propagate_errors(net, state.feedback, trace, e), state

    return LearningRule(init, compute_targets)


@hookimpl
def ngf_register_rules():
    """Register ``fa``."""
    return {"fa": fa}
