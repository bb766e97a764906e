"""Local Representation Alignment (``lra``), Ororbia et al. 2018 (docs/rules.md#lra)."""

from typing import NamedTuple

from ngf.core.checks import number
from ngf.core.errors import NgfError
from ngf.core.feedback import check_distribution, layer_feedback, receive_change, walk_down
from ngf.core.rule import LearningRule
from ngf.host.hookspecs import hookimpl


class LRAState(NamedTuple):
    """Error-feedback weights E_l, one per node l ≥ 2 (None for the first node)."""

    feedback: tuple


def lra(
    beta: float = 0.1,
    gamma: float = 1.0,
    learn_e: bool = False,
    e_scale: float = 1.0,
    e_dist: str = "normal",
    e_decay: float = 0.0,
) -> LearningRule:
    """Local representation alignment.

    Args:
      beta: β, the step from h^{l-1} toward the fed-back error (reference code: 0.1).
      gamma: γ in the LRA-E update E_l ← E_l + γ·ΔW_l (reference code: 1).
      learn_e: move E with the forward weights (LRA-E): E_l receives γ times the change ΔW_l
        the optimiser applied to W_l; E stays fixed when False.
      e_scale: E's initial scale, in units of Glorot's standard deviation.
      e_dist: E's initial distribution, ``normal`` or ``uniform``.
      e_decay: λ with ``learn_e``: W and E both decay by λ per step, as in Kolen–Pollack
        (``kp``), so that E − γW shrinks; 0, the reference, keeps LRA-E's update alone.
    """
    check_distribution(e_dist, "lra option e_dist")
    beta, gamma = (number("lra", n, v, minimum=0) for n, v in (("beta", beta), ("gamma", gamma)))
    e_scale = number("lra", "e_scale", e_scale, minimum=0, exclusive=True)
    e_decay = number("lra", "e_decay", e_decay, minimum=0, maximum=0.5)
    if e_decay and not learn_e:
        raise NgfError("lra option e_decay needs learn_e=true (a fixed E does not decay)")

    def init(key, net, params):
        return LRAState(layer_feedback(key, params, e_scale, e_dist))

    def compute_targets(net, params, trace, labels, state):
        def send(c, delta):  # J_c^T(E_c, δ^c): node c's error fed back through its own E
            return net.input_vjp(c, state.feedback[c], trace[c].inputs, delta)

        def signal(l, back):
            node = trace[l]
            h_target = node.pre - beta * back  # h̃^l = h^l − β · Σ_{c reads l} J_c^T(E_c, δ^c)
            y = net.activations[l](h_target)  # y^l = f_l(h̃^l)
            # δ^l = ∂(½‖z − y‖²)/∂h^l = f'(h^l) ⊙ (z^l − y^l)
            return net.activation_vjp(l, node.pre, node.out - y)

        e = net.loss.error(trace[-1].pre, labels)  # δ^L = e
        return walk_down(net, e, send, signal), state

    def apply_changes(net, params, changes, state):
        # LRA-E: E_l ← E_l + γ·ΔW_l − λE_l with ΔW_l the change applied to W_l ← W_l + ΔW_l − λW_l
        params = tuple(receive_change(p, c, e_decay) for p, c in zip(params, changes))
        feedback = tuple(None if e is None else receive_change(e, c, e_decay, gamma)
                         for e, c in zip(state.feedback, changes))
        return params, LRAState(feedback)

    return LearningRule(init, compute_targets, apply_changes=apply_changes if learn_e else None)


@hookimpl
def ngf_register_rules():
    """Register ``lra``."""
    return {"lra": lra}
