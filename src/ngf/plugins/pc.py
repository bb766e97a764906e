"""Predictive coding (``pc``), discriminative: Whittington & Bogacz 2017 (docs/rules.md#pc, #graph).

Every node l of the graph carries an activity x̂^l, started at the forward pass's z^l;
the input's is x and stays there. Node l predicts its activity from the sum of its
parents' activities, û^l = Σ_{k ∈ P(l)} x̂^k, with its own map and activation:

    F = Σ_{l<L} ½‖x̂^l − f_l(a_l(θ_l, û^l))‖² + β · CE(a_L(θ_L, û^L), y),

summed over units, each example relaxing on its own. β weights the output's term (the
output layer's precision 1/Σ_L in the paper's Gaussian model); β = 1 is the unweighted energy F of docs/rules.md#pc.
With ε^l = x̂^l − f_l(h^l), h^l = a_l(θ_l, û^l), and, at the current activities,

    δ^l = −f_l'(h^l) ⊙ ε^l (hidden nodes),    δ^L = β (softmax(h^L) − onehot(y)),

∂F/∂x̂^l = ε^l + Σ_{c reads l} J_c^T(W_c, δ^c) at û^c. T steps x̂^l ← x̂^l − γ ∂F/∂x̂^l relax
the hidden nodes (not x, not the output, which has no activity) in one ``lax.fori_loop``;
then node l's update is ∂F/∂θ_l / β = vjp_θ a_l(θ_l, û^l)(δ^l / β), averaged over the batch,
at the relaxed activities (÷β keeps it in the loss's units; Adam does not see the scale).

Why it approximates bp: at equilibrium ∂F/∂x̂^l = 0, so ε^l = −Σ_c J_c^T δ^c and
δ^l = f_l'(h^l) ⊙ Σ_c J_c^T(W_c, δ^c), bp's recursion, taken at activities that moved from z
by O(β·e): for small output errors (a confident network, or small β) and enough steps the
updates are bp's (tests/test_pc.py: within 5°). Each step moves the error one node down, so
a node d edges below the output gets nothing before step d (at most 5 in the default resnet).

The defaults (T = 10, γ = 0.05, β = 0.05; seed 0, Adam 1e-3, batch 64) reach 0.984 on MNIST
(mlp, 5 epochs), 0.881 on Fashion-MNIST (mlp, 5) and 0.987 on MNIST (cnn, 3). With β = 1 no
(T, γ) tried met all three. The top hidden node moves by about −γT·β·e W_Lᵀ, so the output
node's update, taken there, is bp's minus about γT·β·W_L eᵀe/n: descent grows W_L wherever
the errors stay large; the grown W_L stiffens the relaxation, which then explains the label
away (δ^L → 0) and learning stalls (mlp, Fashion-MNIST: 0.850 at T = 10, γ = 0.05; MNIST,
T = 20, γ = 0.1: 0.964). Shortening the relaxation instead (γT = 0.02) saved
Fashion-MNIST (0.889) but starved the cnn's convolutions, whose errors grow as (γT)^d/d!
and fell below float32's resolution (0.926 after one epoch). A small β shrinks that term
without slowing the errors' travel down. The explicit steps need a small γ as the weights
grow: with β = 0.05, T = 10 and γ = 0.1 fell to 0.834 on Fashion-MNIST where T = 20 and
γ = 0.05 (the same γT) reached 0.882.

A sum node (resnet's ``Add``: a_l the identity, no weights) is an ordinary node: it has an
activity, predicts it as f_l(Σ parents), sends δ^l unchanged to each parent (its J^T is
the identity) and has nothing to update. The branch's last convolution (identity
activation) is a latent node of its own, whose equilibrium error is the sum node's δ.

Locality. ``feedback=symmetric`` (the paper) sends J_c^T with the forward weights θ_c of
each consumer: the relaxation reads other nodes' forward weights, so this rule is exempt
from tests/test_locality.py. ``feedback=random`` sends J_c^T with fixed random B_c of θ_c's
shape (as ``fa``): no forward weight is read in the backward direction; θ_c is read only
forwards, in node c's own prediction a_c(θ_c, û^c). The relaxed activities still depend on
the other nodes' predictions (that is inference), so a node's update moves with θ_c's
forward use even then.

Cost: each step is a forward and a J^T pass of every node that reads another node (a node
reading only x predicts the same h throughout: it comes from the trace), T × (forward +
J^T) on top of bp's step.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ngf.core.checks import number
from ngf.core.errors import NgfError
from ngf.core.feedback import check_distribution, layer_feedback
from ngf.core.network import INPUT, sum_of_parents
from ngf.core.rule import LearningRule, Updates
from ngf.host.hookspecs import hookimpl

FEEDBACK = ("symmetric", "random")
#: Relaxations of up to this many steps are compiled unrolled (the loop is still traced once): on XLA's
#: CPU backend a convolution's transpose inside a while loop ran about 10× slower than unrolled
#: (cnn, T = 10: 224 against 41 ms a step; bp 8 ms). Longer ones stay a loop, to keep compiling short.
FULL_UNROLL = 32


class PCState(NamedTuple):
    """Fixed random B_c of θ_c's shape per node (None for the first) under ``random``; () under ``symmetric``."""

    feedback: tuple


class PCSignals(NamedTuple):
    """What the relaxation leaves: every node's δ (÷β), input û and error ε at the relaxed activities."""

    deltas: tuple  # δ^l / β per example: −f'(h^l) ⊙ ε^l / β for hidden nodes, softmax(h^L) − onehot(y) on top
    inputs: tuple  # û^l = Σ_{k ∈ P(l)} x̂^k, where each node's update is taken
    errors: tuple  # ε^l = x̂^l − f_l(h^l) for the hidden nodes
    energy: jax.Array  # F at the relaxed activities, summed over the batch


def node_inputs(net, x: jax.Array, acts: tuple) -> tuple:
    """û^l = Σ_{k ∈ P(l)} x̂^k for every node (x̂ of the input is x)."""
    return tuple(sum_of_parents(net.parents(l), x, acts) for l in range(net.depth))


def reads_only_input(net, l: int) -> bool:
    """Whether node l reads x alone: its prediction never changes while the activities relax."""
    return all(k == INPUT for k in net.parents(l))


def prediction_errors(net, params, trace, inputs: tuple, acts: tuple, labels: jax.Array, beta: float = 1.0):
    """(ε, δ) at the current activities: ε^l = x̂^l − f_l(h^l) and δ^l = −f_l'(h^l) ⊙ ε^l for hidden l;
    δ^L = β (softmax(h^L) − onehot(y)), with h^l = a_l(θ_l, û^l) each node's own prediction."""
    pre = [trace[l].pre if reads_only_input(net, l) else net.pre_activation(l, params[l], inputs[l])
           for l in range(net.depth)]
    errors = tuple(acts[l] - net.activations[l](pre[l]) for l in range(net.depth - 1))
    deltas = tuple(-net.activation_vjp(l, pre[l], eps) for l, eps in enumerate(errors))
    return errors, deltas + (beta * net.loss.error(pre[-1], labels),)


def energy_gradient(net, back, inputs: tuple, errors: tuple, deltas: tuple) -> tuple:
    """∂F/∂x̂^l = ε^l + Σ_{c reads l} J_c^T(W_c, δ^c) at û^c, for every hidden node l.

    W_c = ``back[c]``: the forward θ_c (symmetric) or the fixed random B_c (random).
    """
    sent = [net.input_vjp(c, back[c], inputs[c], deltas[c]) if not reads_only_input(net, c) else None
            for c in range(net.depth)]
    return tuple(eps + sum(sent[c] for c in net.consumers(l)) for l, eps in enumerate(errors))


def relax(net, params, back, trace, labels, steps: int, rate: float, beta: float = 1.0) -> PCSignals:
    """T steps x̂^l ← x̂^l − γ ∂F/∂x̂^l on the hidden nodes, from x̂ = z; the signals at the end (δ ÷ β)."""
    x = trace[0].inputs  # node 0 reads x alone (check_reads)

    def signals(acts):
        inputs = node_inputs(net, x, acts)
        return inputs, *prediction_errors(net, params, trace, inputs, acts, labels, beta)

    def step(_, acts):
        inputs, errors, deltas = signals(acts)
        grads = energy_gradient(net, back, inputs, errors, deltas)
        return tuple(a - rate * g for a, g in zip(acts, grads))

    start = tuple(node.out for node in trace[:-1])  # x̂^l = z^l; the output node has no activity
    # traced once, whatever T; XLA compiles short relaxations unrolled (see FULL_UNROLL)
    acts = jax.lax.fori_loop(0, steps, step, start, unroll=steps <= FULL_UNROLL)
    inputs, errors, deltas = signals(acts)
    top = net.pre_activation(net.depth - 1, params[-1], inputs[-1])  # h^L from the relaxed activities
    # F = Σ_l ½‖ε^l‖² + β L(h^L, y), summed over the batch (``energy``, without recomputing the hidden nodes)
    free = sum(0.5 * jnp.sum(eps ** 2) for eps in errors) + beta * jnp.sum(net.loss.per_example(top, labels))
    return PCSignals(tuple(d / beta for d in deltas), inputs, errors, free)


def energy(net, params, x: jax.Array, acts: tuple, labels: jax.Array, beta: float = 1.0) -> jax.Array:
    """F at the activities ``acts`` (one per hidden node), summed over the batch (for checks and plots)."""
    inputs = node_inputs(net, x, acts)
    pre = [net.pre_activation(l, params[l], inputs[l]) for l in range(net.depth)]
    squares = sum(0.5 * jnp.sum((a - net.activations[l](pre[l])) ** 2) for l, a in enumerate(acts))
    return squares + beta * jnp.sum(net.loss.per_example(pre[-1], labels))


def pc(steps: int = 10, rate: float = 0.05, beta: float = 0.05, feedback: str = "symmetric",
       scale: float = 1.0, dist: str = "normal") -> LearningRule:
    """Predictive coding: relax the hidden activities on the energy F, then learn from the prediction errors.

    Reports ``energy`` per epoch: F at the relaxed activities, per example.

    Args:
      steps: T, inference steps x̂ ← x̂ − γ ∂F/∂x̂ on the hidden nodes before the update (≥ 1).
      rate: γ, the inference rate of those steps (0 < γ ≤ 1).
      beta: β, the weight of the output's cross-entropy in F (its precision; 1 is the unweighted F).
      feedback: symmetric (errors go down through the forward weights, the paper's form) or random (fixed B).
      scale: under feedback=random, B's scale in units of Glorot's standard deviation for θ_l's shape.
      dist: under feedback=random, B's distribution, ``normal`` or ``uniform`` (same standard deviation).
    """
    steps = number("pc", "steps", steps, minimum=1, integer=True)
    rate = number("pc", "rate", rate, minimum=0, maximum=1, exclusive=True)
    if feedback not in FEEDBACK:
        raise NgfError(f"unknown pc feedback {feedback!r}; valid feedbacks: {', '.join(FEEDBACK)}")
    check_distribution(dist, "pc option dist")
    scale = number("pc", "scale", scale, minimum=0, exclusive=True)
    beta = number("pc", "beta", beta, minimum=0, exclusive=True)
    symmetric = feedback == "symmetric"

    def init(key, net, params):
        return PCState(() if symmetric else layer_feedback(key, params, scale, dist))

    def compute_targets(net, params, trace, labels, state):
        back = params if symmetric else state.feedback  # J_c^T's weights: θ_c, or B_c (no weight transport)
        return relax(net, params, back, trace, labels, steps, rate, beta), state

    def local_update(net, params, trace, signals, state):
        batch = trace[0].inputs.shape[0]
        # ∂F/∂θ_l / β = vjp_θ a_l(θ_l, û^l)(δ^l / β) at the relaxed input, averaged over the batch
        updates = tuple(net.param_vjp(l, params[l], signals.inputs[l], signals.deltas[l] / batch)
                        for l in range(net.depth))
        return Updates(updates, metrics={"energy": signals.energy / batch}), state

    return LearningRule(init, compute_targets, local_update, metrics=("energy",))


@hookimpl
def ngf_register_rules():
    """Register ``pc``."""
    return {"pc": pc}
