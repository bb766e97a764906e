"""Kolen–Pollack (``kp``), Akrout, Wilson, Humphreys, Lillicrap and Tweed 2019 (docs/rules.md#kp).

The error travels down exactly as in feedback alignment, through feedback weights B_c
of θ_c's shape: δ^k = f'(h^k) ⊙ Σ_{c reads k} J_c^T(B_c, δ^c). B is not fixed: it
receives the same change ΔW_c that the optimiser applied to the forward weights, and
both decay by λ,

    W ← W + ΔW − λW,    B ← B + ΔW − λB,

so B − W shrinks by (1 − λ) every step and B converges to W with no weight transport:
each node's B sees only its own node's change, whatever the optimiser (Adam or SGD)
made of the update. The rule sees that change through ``LearningRule.apply_changes``.

Which weights decay follows the authors' code (makrout/Deep-Learning-without-Weight-Transport,
``fcnn/FCNN_KP.py`` lines 64–73): every weight matrix or kernel, the first node's W
included, and no bias (a bias takes b + Δb). λ's default, 3e-4, is not theirs: their
``weight_decay`` multiplier defaults to 1 and ``main.py`` never sets it, so their runs
decay nothing (λ = 0, ``decay=0`` here), and B − W then never shrinks; the paper's
convergence of B to W needs λ > 0.

Locality: no node's signal or update reads another node's forward weights; B_c lives
with node c and learns from node c's own change.
"""

from typing import NamedTuple

from ngf.core.checks import number
from ngf.core.feedback import check_distribution, layer_feedback, propagate_errors, receive_change
from ngf.core.rule import LearningRule
from ngf.host.hookspecs import hookimpl


class KPState(NamedTuple):
    """Feedback weights B_l of θ_l's shape, one per node l ≥ 2 (None for the first), learned."""

    feedback: tuple


def kp(decay: float = 3e-4, scale: float = 0.1, dist: str = "normal") -> LearningRule:
    """Kolen–Pollack: feedback alignment whose feedback weights receive the forward weights' changes.

    Args:
      decay: λ, the decay per step of every weight matrix W and B (no bias), so B − W shrinks by 1 − λ
        each step; the authors' code uses 0.
      scale: B's initial scale, in units of Glorot's standard deviation for θ_l's shape.
      dist: B's initial distribution, ``normal`` or ``uniform`` (same standard deviation).
    """
    check_distribution(dist, "kp option dist")
    decay = number("kp", "decay", decay, minimum=0, maximum=0.5)
    scale = number("kp", "scale", scale, minimum=0, exclusive=True)

    def init(key, net, params):
        return KPState(layer_feedback(key, params, scale, dist))

    def compute_targets(net, params, trace, labels, state):
        e = net.loss.error(trace[-1].pre, labels)  # δ^L = e
        # δ^k = f'(h^k) ⊙ Σ_c J_c^T(B_c, δ^c): as fa, no forward weight is read on the way down
        return propagate_errors(net, state.feedback, trace, e), state

    def apply_changes(net, params, changes, state):
        # every node, the first too: W ← W + ΔW − λW and B ← B + ΔW − λB on weight matrices and
        # kernels, b ← b + Δb on biases (FCNN_KP.py lines 64–73); the first node has no B
        params = tuple(receive_change(w, dw, decay, matrices_only=True) for w, dw in zip(params, changes))
        feedback = tuple(None if b is None else receive_change(b, dw, decay, matrices_only=True)
                         for b, dw in zip(state.feedback, changes))
        return params, KPState(feedback)

    return LearningRule(init, compute_targets, apply_changes=apply_changes)


@hookimpl
def ngf_register_rules():
    """Register ``kp``."""
    return {"kp": kp}
