"""Equilibrium propagation (``ep``): Scellier & Bengio 2017; symmetric nudging, Laborieux et al. 2021.

docs/rules.md#ep. Scellier & Bengio, "Equilibrium propagation: bridging the gap between energy-based
models and backpropagation", Front. Comput. Neurosci. 11:24 (2017), code github.com/bscellier/
Towards-a-Biologically-Plausible-Backprop (``model.py``, ``train_model.py``); Laborieux et al.,
"Scaling equilibrium propagation to deep ConvNets by drastically reducing its gradient estimator
bias", Front. Neurosci. 15:633674 (2021), code github.com/Laborieux-Axel/Equilibrium-Propagation
(``model_utils.py``, ``main.py``).

Every node l of the graph has a state s^l (a rate, shaped like its output z^l); x is clamped.
The forward weights are the symmetric couplings of one scalar primitive function, written once on
the graph with each node's own map a_l (dense, convolution, pooling, a weightless sum):

    Φ(s, θ) = Σ_l ⟨s^l, a_l(θ_l, u^l)⟩,   u^l = Σ_{k ∈ P(l)} s^k  (s of the input: x)
    E(s) = ½ Σ_l ‖s^l‖² − Φ(s),   F = E + β Σ_n C(s^L_n, y_n),   C the run's --loss

Dynamics (projected Euler steps, by ``jax.grad`` of F):  s^l ← ρ_l(s^l − ε ∂F/∂s^l). ρ_l is the hard
sigmoid clip(s, 0, 1) for every hidden node (``rho``; the papers' ρ, whatever the model's f_l) or
the node's own f_l; the output node's is its own f_L (ngf's linear logits, Laborieux's cross-entropy
setting) or the hard sigmoid (``output``; the papers' output units under the squared cost). With
the hard sigmoid this is the authors' step ``T.clip(layer + epsilon * dot, 0., 1.)`` exactly
(``model.py``: their E = ½Σρ(s)² − Σρ(s)·b − Σρ(s)Wρ(s) is ours on [0, 1], where ρ(s) = s); with
ε = 1 it is Laborieux's s ← σ(∂Φ/∂s) (``P_MLP.forward``). Fixed points: s = ρ(∂(Φ − βC)/∂s) for a
ρ that projects (hard_sigmoid, relu, identity); for tanh or sigmoid use step = 1. The hard sigmoid
bounds E on any graph; relu does not (a residual block's ½(a² + b² + c²) − a(b + c) falls without
bound along a = b = c), and rho=node diverged to NaN on the contract check's resnet.

Phases: free, T₁ steps at β = 0 from zeros (Laborieux's ``init_neurons``) or from a feedforward
sweep (``init``); nudged, T₂ steps from the free equilibrium at +β (``one``), at ±β with the sign
drawn per batch (``random``: ``train_model.py``'s ``sign = 2*np.random.randint(0,2)-1``) or at +β
and −β (``symmetric``: ``main.py``'s ``--thirdphase``, both from the free state). Update, batch-averaged
and handed to the optimiser as a gradient (it subtracts it, so θ moves toward the nudged state):

    ∇θ_l = −(∂Φ/∂θ_l(s^a) − ∂Φ/∂θ_l(s^b)) / (β_a − β_b) × lrs_l

with (a, b) = (β, free), (±β, free) or (+β, −β), ``compute_syn_grads``'s ``(phi_2 − phi_1)/(beta_1
− beta_2)``. For a dense node ∂Φ/∂W_l = u^l ⊗ s^l: a contrastive Hebbian rule. Prediction: the free
equilibrium's output state s^L (argmax). Metrics: ``energy``, E at the free equilibrium per example;
``residual``, the per-example norm of the free phase's last step, ‖s_T₁ − s_T₁₋₁‖ (0 at a fixed point).

The engine's forward pass is not used (``uses_trace=False``). A node reading x alone adds the
constant a_l(θ_l, x) to the dynamics, computed once per phase.

Locality: ∂Φ/∂s^l reads J_c^T(θ_c, s^c) of every consumer c, the forward weights of the nodes
above (the couplings are symmetric by construction, as in the paper), so ``ep`` is exempt from
tests/test_locality.py by name, like pc's symmetric form. Each node's update reads its own u^l
and s^l at two equilibria only.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ngf.core.checks import number
from ngf.core.errors import NgfError
from ngf.core.network import INPUT, sum_of_parents
from ngf.core.rule import LearningRule, Updates, stateless_init
from ngf.host.hookspecs import hookimpl
from ngf.models.layers import hard_sigmoid

NUDGES = ("symmetric", "one", "random")
INITS = ("zeros", "forward")
RHOS = ("hard_sigmoid", "node")


class EPSignals(NamedTuple):
    """Two equilibria to contrast, and what the free phase leaves for prediction and metrics."""

    first: tuple  # s^a: the nudged states (+β, or ±β)
    second: tuple  # s^b: the free states, or the −β states under ``symmetric``
    width: jax.Array  # β_a − β_b
    output: jax.Array  # s^L at the free equilibrium: the scores
    energy: jax.Array  # E at the free equilibrium, per example
    residual: jax.Array  # ‖s_T₁ − s_T₁₋₁‖ per example, batch mean


def reads_only_input(net, l: int) -> bool:
    """Whether node l reads x alone: its term a_l(θ_l, x) is the same at every step."""
    return all(k == INPUT for k in net.parents(l))


def input_terms(net, params, x) -> tuple:
    """a_l(θ_l, x) for the nodes that read x alone (None for the others): constants of a phase."""
    return tuple(net.pre_activation(l, params[l], x) if reads_only_input(net, l) else None
                 for l in range(net.depth))


def primitive(net, params, x, states, fixed=None) -> jax.Array:
    """Φ(s, θ) = Σ_l ⟨s^l, a_l(θ_l, u^l)⟩, u^l = Σ_{k ∈ P(l)} s^k, summed over the batch."""
    total = 0.0
    for l in range(net.depth):
        h = fixed[l] if fixed is not None and fixed[l] is not None else \
            net.pre_activation(l, params[l], sum_of_parents(net.parents(l), x, states))
        total = total + jnp.sum(states[l] * h)
    return total


def energy(net, params, x, states, fixed=None) -> jax.Array:
    """E(s) = ½ Σ_l ‖s^l‖² − Φ(s, θ), summed over the batch (Scellier & Bengio's E on [0, 1])."""
    return sum(0.5 * jnp.sum(s ** 2) for s in states) - primitive(net, params, x, states, fixed)


def total_energy(net, params, x, states, labels, beta, fixed=None) -> jax.Array:
    """F = E + β Σ_n C(s^L_n, y_n), C the run's loss on the output state (F = E without labels: free)."""
    free = energy(net, params, x, states, fixed)
    return free if labels is None else free + beta * jnp.sum(net.loss.per_example(states[-1], labels))


def rates(net, rho: str, output: str) -> tuple:
    """ρ_l per node: the hard sigmoid or the node's own activation f_l, for the hidden nodes (``rho``)
    and for the output node (``output``)."""
    hidden = (hard_sigmoid,) * (net.depth - 1) if rho == "hard_sigmoid" else tuple(net.activations[:-1])
    return hidden + (hard_sigmoid if output == "hard_sigmoid" else net.activations[-1],)


def feedforward(net, params, x, rhos) -> tuple:
    """s^l = ρ_l(a_l(θ_l, u^l)) node by node: the states with no top-down input (Bengio et al. 2016)."""
    states = []
    for l in range(net.depth):
        states.append(rhos[l](net.pre_activation(l, params[l], sum_of_parents(net.parents(l), x, states))))
    return tuple(states)


def start_states(net, params, x, rhos, init: str) -> tuple:
    """The free phase's start: zeros (Laborieux's ``init_neurons``) or the feedforward sweep."""
    if init == "forward":
        return feedforward(net, params, x, rhos)
    shapes = jax.eval_shape(lambda p, inp: feedforward(net, p, inp, rhos), params, x)
    return tuple(jnp.zeros(s.shape, s.dtype) for s in shapes)


def relax(net, params, x, labels, states, fixed, rhos, steps: int, step: float, beta) -> tuple:
    """T steps s^l ← ρ_l(s^l − ε ∂F/∂s^l) from ``states`` (one ``lax.fori_loop``); (states, residual),
    the residual the per-example norm of the last step's change, averaged over the batch."""
    force = jax.grad(lambda s: total_energy(net, params, x, s, labels, beta, fixed))

    def body(_, carry):
        s, _ = carry
        new = tuple(rho(a - step * g) for rho, a, g in zip(rhos, s, force(s)))  # s ← ρ(s − ε ∂F/∂s)
        squares = sum(jnp.sum((n - a).reshape(n.shape[0], -1) ** 2, axis=1) for n, a in zip(new, s))
        return new, jnp.mean(jnp.sqrt(squares))

    # traced once whatever T, and compiled as a loop (unrolling 3 phases of a resnet took minutes to compile)
    return jax.lax.fori_loop(0, steps, body, (states, jnp.zeros((), states[0].dtype)))


def phases(net, params, x, labels, key, options) -> EPSignals:
    """The free phase, then the nudged phase(s) from its equilibrium, per ``options.nudge``."""
    rhos, fixed = rates(net, options.rho, options.output), input_terms(net, params, x)
    start = start_states(net, params, x, rhos, options.init)
    free, residual = relax(net, params, x, None, start, fixed, rhos, options.t1, options.step, 0.0)

    def nudged(beta):
        return relax(net, params, x, labels, free, fixed, rhos, options.t2, options.step, beta)[0]

    beta = jnp.asarray(options.beta, x.dtype)  # float32 in a run; float64 (tests/reference) keeps β exact
    if options.nudge == "symmetric":  # Laborieux et al.: +β and −β, both from the free state
        first, second, width = nudged(beta), nudged(-beta), 2 * beta
    else:  # +β, or ±β with one sign per batch (Scellier & Bengio's train_model.py)
        if options.nudge == "random":
            beta = beta * jnp.where(jax.random.bernoulli(key), 1.0, -1.0)
        first, second, width = nudged(beta), free, beta
    batch = x.shape[0]
    return EPSignals(first, second, width, free[-1], energy(net, params, x, free, fixed) / batch, residual)


def contrast(net, params, x, signals: EPSignals, lrs: tuple) -> tuple:
    """∇θ_l = −(∂Φ/∂θ_l(s^a) − ∂Φ/∂θ_l(s^b)) / ((β_a − β_b) B) × lrs_l: one ``jax.grad`` of the difference."""
    grads = jax.grad(lambda p: primitive(net, p, x, signals.first) - primitive(net, p, x, signals.second))(params)
    scale = -1.0 / (signals.width * x.shape[0])
    return tuple(jax.tree.map(lambda g, m=(lrs[l] if lrs else 1.0): g * (scale * m), grads[l])
                 for l in range(net.depth))


class Options(NamedTuple):
    """The checked hyperparameters (``ep``'s Args)."""

    t1: int
    t2: int
    beta: float
    step: float
    nudge: str
    init: str
    rho: str
    output: str


def ep(t1: int = 30, t2: int = 10, beta: float = 0.5, step: float = 0.5, nudge: str = "symmetric",
       init: str = "zeros", rho: str = "hard_sigmoid", output: str = "node", lrs: tuple = ()) -> LearningRule:
    """Equilibrium propagation: contrast ∂Φ/∂θ at a free and a nudged equilibrium of the energy.

    The cost C is the run's --loss on the output state (mse: Scellier & Bengio's ½‖s^L − y‖²).
    Reports ``energy`` (E at the free equilibrium, per example) and ``residual`` (the norm of the
    free phase's last step per example; 0 at a fixed point) per epoch. Predicts from the free phase.

    Args:
      t1: T₁, steps of the free phase (integer ≥ 1; Laborieux's MNIST mlp 30, Scellier's 784-500-10 20).
      t2: T₂, steps of each nudged phase, from the free equilibrium (integer ≥ 1; Laborieux's 10,
        Scellier's 4); the nudge reaches a node d edges below the output at step d only.
      beta: β > 0, the nudging strength (with --loss mse, 1.0 is Scellier's 0.5 on their ‖s − y‖² cost).
      step: ε, the step size of s ← ρ(s − ε ∂F/∂s) (0 < ε ≤ 1; the paper's 0.5; 1 is Laborieux's s ← ρ(∂Φ/∂s)).
      nudge: symmetric (+β and −β, over 2β; Laborieux et al. 2021), one (+β only) or random
        (±β, one sign per batch; Scellier & Bengio's code).
      init: the free phase's start, zeros (the authors') or forward (a feedforward sweep of ρ∘a).
      rho: ρ of the hidden nodes, hard_sigmoid (clip to [0, 1], the papers'; bounds the energy on any
        graph) or node (each node's own activation: with relu the energy is unbounded and may diverge).
      output: ρ of the output node, node (its own activation: linear logits in ngf's models; Laborieux's
        cross-entropy setting) or hard_sigmoid (the papers' output units under the squared cost).
      lrs: per-node multipliers of the updates, one per node (the authors' per-layer learning rates
        α_l with --optimizer sgd --lr 1); empty: 1 for every node.
    """
    t1 = number("ep", "t1", t1, minimum=1, integer=True)
    t2 = number("ep", "t2", t2, minimum=1, integer=True)
    beta = number("ep", "beta", beta, minimum=0, exclusive=True)
    step = number("ep", "step", step, minimum=0, maximum=1, exclusive=True)
    for name, value, valid in (("nudge", nudge, NUDGES), ("init", init, INITS), ("rho", rho, RHOS),
                               ("output", output, RHOS)):
        if value not in valid:
            raise NgfError(f"ep option {name} must be one of {', '.join(valid)}, got {value!r}")
    lrs = tuple(number("ep", "lrs", v, minimum=0) for v in (lrs if isinstance(lrs, (tuple, list)) else (lrs,)))
    options = Options(t1, t2, beta, step, nudge, init, rho, output)

    def init_state(key, net, params):
        if lrs and len(lrs) != net.depth:
            raise NgfError(f"ep option lrs lists {len(lrs)} values; the network has {net.depth} nodes: "
                           f"give one per node")
        return stateless_init(key, net, params)

    def compute_targets(net, params, trace, labels, state, x, key):
        return phases(net, params, x, labels, key, options), state

    def local_update(net, params, trace, signals, state, x):
        metrics = {"energy": signals.energy, "residual": signals.residual}
        return Updates(contrast(net, params, x, signals, lrs), metrics=metrics, logits=signals.output), state

    def predict(net, params, x, state):
        rhos = rates(net, rho, output)
        start = start_states(net, params, x, rhos, init)
        free, _ = relax(net, params, x, None, start, input_terms(net, params, x), rhos, t1, step, 0.0)
        return free[-1]  # s^L at the free equilibrium

    return LearningRule(init_state, compute_targets, local_update, predict=predict,
                        metrics=("energy", "residual"), uses_trace=False)


@hookimpl
def ngf_register_rules():
    """Register ``ep``."""
    return {"ep": ep}
