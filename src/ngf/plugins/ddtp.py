"""Direct difference target propagation, linear feedback (``ddtp``; DDTP-linear, Meulemans et al. 2020).

docs/rules.md#ddtp. The output target is a step down the task loss, ŷ^L = h^L − β e. Every hidden
node with weights has a learned linear map Q_l, shaped [size(z^l), n_classes], that carries the
output target's difference straight to it:

    ŷ^l = z^l + Q_l (ŷ^L − h^L) = z^l − β Q_l e,      δ^l = f'(h^l) ⊙ (z^l − ŷ^l)

(the node loss ½‖z^l − ŷ^l‖²); the output node learns from e. With a linear Q the difference
correction Q(ŷ^L) − Q(h^L) is Q(ŷ^L − h^L), and a bias in Q would cancel, so Q has none.

Q_l learns from the difference reconstruction loss: noise ε ~ N(0, σ²) at node l's output is
carried forward to the output, with the rest of the trace fixed (``forward_from``), and

    R_l(Q) = mean over the batch of ‖Q (h^L(z^l + ε) − h^L(z^l)) − ε‖²  +  λ ‖Q‖²

is minimised by the run's optimiser. For small σ, Δ = h^L(z^l+ε) − h^L(z^l) ≈ J_l ε (J_l the Jacobian of
h^L with respect to z^l), so E R_l = σ²‖Q J_l − I‖² + λ‖Q‖², whose minimum is
Q = J_lᵀ (J_l J_lᵀ + (λ/σ²) I)⁻¹ (J_l's products averaged over the batch): a damped
pseudo-inverse of the network above l, which makes ŷ^l − z^l = −β Q_l e a Gauss–Newton step
(the paper's theory).

As in the authors' code (github.com/meulemansalex/theoretical_framework_for_target_propagation,
``DDTPMLPLayer``, ``train_parallel``): one noise vector per example and node each step (their
σ ≈ 0.09–0.1), Q trains in the same step as the forward weights, after the targets were taken
with the old Q, and Q starts Xavier-normal (``q_scale`` 1). Q is the rule's trainable
parameters (``init_params``): the run's optimiser and schedule train it, at ``q_lr_scale`` ×
the run's lr (their code gives Q an Adam of its own). β = 1 keeps their ratio of hidden
to output signals (their target step cancels against the learning rate, ``normalize_lr``).
Their code also trains Q alone for six epochs before the forward weights move, and for one
more after each epoch; a rule sees no data outside the training step, so here Q learns online
only. It starts as a DFA matrix: with Q fixed, δ^l = β f'(h^l) ⊙ Q_l e is dfa with D = βQ.

Q maps to z^l, not to p(z^l), where a pooling consumer reads it (dfa's D): z^l is what the
node loss compares, the noise enters there, and the pooling is simply part of the forward pass
the noise travels through, so Q learns through it (noise on a unit the pool drops for one
example never reaches the output, so that example teaches Q nothing for it). The authors'
convolutional layers end with their pooling, so their target sits after it; ngf gives pooling
to the reader's map. Both were measured on ``cnn``, MNIST, seeds 0 and 1, five epochs: 0.9836
and 0.9842 with Q to z^l, 0.9794 and 0.9769 with Q to p(z^l) (the signal through each
example's max positions, as dfa delivers), though the latter's convolution updates were closer
to the gradient (27–70° against 64–100°).

Weightless nodes (resnet's sums) have no update of their own, and in direct target
propagation no node reads another's target, so they need no Q (a Q costs a forward pass of
noise per step): their target is their output, ŷ^l = z^l, so δ^l = 0.

Measured at the defaults (seed 0, Adam 1e-3, ``ngf run --model mlp --epochs 5``): MNIST 0.978,
Fashion-MNIST 0.879; with Q fixed (``q_lr_scale=0``) 0.977 and 0.867, dfa 0.978 and 0.868. β 0.1,
σ 0.01 or 0.5 and Q's lr 1e-4 or 1e-2 all stayed within 0.977–0.979 and 0.876–0.878. A step costs
about 1.15 bp steps on mlp (ddtp's own signals and updates 0.85, the noise draw and its forward
pass the rest), 1.8 on cnn and 2 on resnet, where the forward passes of noise from every
weight node over the nodes above it, and the noise itself, grow with the depth and the images.

Locality: node l's update reads its own weights and Q_l only; the signal comes straight from
the output error. Q_l's training reads the forward weights above l in the forward direction
only (the forward pass of noise), never transposed.
"""

import itertools
import math

import jax
import jax.numpy as jnp

from ngf.core.checks import number
from ngf.core.feedback import check_distribution, random_like
from ngf.core.losses import CE, Loss
from ngf.core.network import updates_from_deltas
from ngf.core.rule import LearningRule, Updates, stateless_init
from ngf.host.hookspecs import hookimpl


def init_feedback(key, net, params, scale: float, dist: str) -> tuple:
    """Q_l of shape [size(z^l), n_classes] for each hidden node with weights (None elsewhere),
    ``scale`` × Glorot (the authors' Xavier normal at 1)."""
    shapes = net.trace_shapes(params)
    n_classes = shapes[-1].pre.shape[-1]
    keys = jax.random.split(key, net.depth)
    return tuple(
        random_like(keys[l], jax.ShapeDtypeStruct((math.prod(t.out.shape[1:]), n_classes), t.out.dtype), scale, dist)
        if jax.tree.leaves(params[l]) else None
        for l, t in enumerate(shapes[:-1])) + (None,)


def forward_from(net, params, trace, l: int, z: jax.Array) -> jax.Array:
    """h^L of a forward pass in which node l's output is replaced by z, the rest of the trace fixed.

    Nodes below l, and nodes above it that no path from l reaches, keep their traced outputs.
    """
    x = trace[0].inputs  # the first node can read nothing but the input
    outs, moved = [t.out for t in trace[:l]] + [z], {l}
    for c in range(l + 1, net.depth):
        if moved.isdisjoint(net.parents(c)):
            outs.append(trace[c].out)
            continue
        h = net.pre_activation(c, params[c], net.node_input(c, x, outs))
        outs.append(net.activations[c](h))
        moved.add(c)
    return h


def reconstruction_loss(q: jax.Array, net, params, trace, l: int, eps: jax.Array, decay: float = 0.0):
    """R_l(Q) = mean_n ‖Q (h^L(z^l + ε) − h^L(z^l)) − ε‖² + λ‖Q‖² (ε summed over units)."""
    diff = forward_from(net, params, trace, l, trace[l].out + eps) - trace[-1].pre  # Δ, [batch, classes]
    recon = diff @ q.T
    return jnp.sum((recon - eps.reshape(recon.shape)) ** 2) / recon.shape[0] + decay * jnp.sum(q ** 2)


def draw_noise(key, trace, feedback, sigma: float) -> tuple:
    """ε ~ N(0, σ²) shaped like z^l, one per example, for each node with a Q (None elsewhere).

    The nodes' ε are slices of ONE draw, so independent as separate draws are, with one random
    number kernel for XLA to compile instead of one per node (each took ~0.5 s on the CPU).
    """
    sizes = [0 if q is None else math.prod(t.out.shape[1:]) for q, t in zip(feedback, trace)]
    flat = sigma * jax.random.normal(key, (trace[0].out.shape[0], sum(sizes)), trace[-1].out.dtype)
    parts = jnp.split(flat, list(itertools.accumulate(sizes))[:-1], axis=1)
    return tuple(None if q is None else part.reshape(t.out.shape) for q, part, t in zip(feedback, parts, trace))


def feedback_gradients(net, params, trace, feedback, noises, decay: float) -> tuple[tuple, jax.Array]:
    """∇R_l with respect to each Q_l, for the given noise (None where there is no Q), and the mean of the
    R_l over the nodes with a Q (0 without any).

    Δ does not depend on Q, so the gradient is that of R's last, linear part: 2 (QΔ − ε)ᵀΔ / B + 2λQ.
    """
    found = [None if q is None else jax.value_and_grad(reconstruction_loss)(q, net, params, trace, l, eps, decay)
             for l, (q, eps) in enumerate(zip(feedback, noises))]
    losses = [pair[0] for pair in found if pair is not None]
    return (tuple(None if pair is None else pair[1] for pair in found),
            jnp.mean(jnp.stack(losses)) if losses else jnp.zeros(()))


def direct_targets(trace, labels, feedback, beta: float, loss: Loss = CE) -> tuple:
    """ŷ^l = z^l + Q_l (ŷ^L − h^L), with ŷ^L = h^L − β e, for every hidden node (ŷ^l = z^l without a Q);
    e = ∂L/∂h^L of ``loss``, the network's."""
    step = -beta * loss.error(trace[-1].pre, labels)  # ŷ^L − h^L
    return tuple(t.out if q is None else t.out + (step @ q.T).reshape(t.out.shape)
                 for t, q in zip(trace[:-1], feedback))


def ddtp(
    beta: float = 1.0,
    noise: float = 0.1,
    q_lr_scale: float = 1.0,
    q_decay: float = 1e-6,
    q_scale: float = 1.0,
    q_dist: str = "normal",
) -> LearningRule:
    """Direct difference target propagation with linear feedback Q_l (DDTP-linear).

    Q is the rule's trainable parameters: the run's optimiser and schedule train it on its
    difference reconstruction loss R, reported per epoch as ``reconstruction``; the run's
    --weight-decay does not apply to Q, whose decay is λ in R.

    Args:
      beta: β in ŷ^L = h^L − β e; Q is linear, so β only scales the hidden signals against the output's e.
      noise: σ of the noise ε ~ N(0, σ²) at z^l that Q_l learns to reconstruct from the output.
      q_lr_scale: Q's learning rate, as a multiple of the run's --lr (0 keeps Q fixed).
      q_decay: λ, the weight decay λ‖Q‖² added to Q's loss (λ/σ² damps Q's pseudo-inverse).
      q_scale: Q's initial scale, in units of Glorot's standard deviation.
      q_dist: Q's initial distribution, ``normal`` or ``uniform``.
    """
    check_distribution(q_dist, "ddtp option q_dist")
    beta, q_lr_scale, q_decay = (number("ddtp", n, v, minimum=0) for n, v in
                                 (("beta", beta), ("q_lr_scale", q_lr_scale), ("q_decay", q_decay)))
    noise, q_scale = (number("ddtp", n, v, minimum=0, exclusive=True) for n, v in
                      (("noise", noise), ("q_scale", q_scale)))

    def init_params(key, net, params):
        return init_feedback(key, net, params, q_scale, q_dist)

    def compute_targets(net, params, trace, labels, state, rule_params):
        e = net.loss.error(trace[-1].pre, labels)  # δ^L = e: the output node learns from the task loss
        targets = direct_targets(trace, labels, rule_params, beta, net.loss)
        # node loss ½‖z^l − ŷ^l‖²: δ^l = f'(h^l) ⊙ (z^l − ŷ^l); no other node's weight is read
        deltas = [net.activation_vjp(l, trace[l].pre, trace[l].out - y) for l, y in enumerate(targets)]
        return tuple(deltas) + (e,), state

    def local_update(net, params, trace, deltas, state, rule_params, key):
        noises = draw_noise(key, trace, rule_params, noise)  # ε from the step's key
        grads, loss = feedback_gradients(net, params, trace, rule_params, noises, q_decay)
        return Updates(updates_from_deltas(net, params, trace, deltas), grads, {"reconstruction": loss}), state

    return LearningRule(stateless_init, compute_targets, local_update, init_params=init_params,
                        metrics=("reconstruction",), params_lr=q_lr_scale, params_decay=False)


@hookimpl
def ngf_register_rules():
    """Register ``ddtp``."""
    return {"ddtp": ddtp}
