"""Difference Target Propagation (``dtp``), Lee et al. 2015 (docs/rules.md#dtp).

Each weight node l that reads a hidden node and is not the output (0 < l < L-1 in a
chain, nodes counted from 0) has a learned inverse from z^l back to its input u^l,
built from the transpose of node l's own map with learned weights ω_l (θ_l's shape):

    g_l(v) = σ(J_l^T(ω_l, v) + c_l),   σ the activation of l's sole parent (else identity)

so a dense node's inverse is a dense layer and a convolution's is a transposed
convolution, with no special case. J_l^T is taken at the node's input u^l (for
linear maps the point does not matter; pooling, part of a_l, is unpooled through
the max positions of that input). A node without weights (the sum at the end of a
residual block) is inverted by its own map's transpose: the identity for a sum, so
an identity skip's inverse is the identity. Where a node feeds several consumers,
their difference corrections add.

Locality: no node's update reads another node's forward weights, with one exception
that the paper makes too: the top hidden target steps down the task loss's gradient
through the output node's own weights, ŷ^{L-1} = z^{L-1} − η̂ · ∂L/∂z^{L-1}, and the
difference corrections carry that target down.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ngf.core.checks import number
from ngf.core.feedback import check_distribution, random_like, walk_down
from ngf.core.network import INPUT, updates_from_deltas
from ngf.core.rule import LearningRule, Updates, stateless_init
from ngf.host.hookspecs import hookimpl


class Inverse(NamedTuple):
    """The parameters of one learned inverse g_l."""

    omega: object  # ω_l, shaped like θ_l
    bias: jax.Array  # c_l, shaped like one example's z^{l-1}


def has_weights(theta) -> bool:
    """Whether a node has parameters (a sum node has none)."""
    return bool(jax.tree.leaves(theta))


def has_inverse(net, l: int, theta) -> bool:
    """Weight nodes between hidden nodes carry an inverse (docs/rules.md#dtp: l ≥ 2, below the output)."""
    return l < net.depth - 1 and has_weights(theta) and any(k != INPUT for k in net.parents(l))


def init_inverses(key, net, params, scale: float, dist: str) -> tuple:
    """Random ω_l (θ_l's shape) and zero c_l (u^l's shape) for each node with an inverse."""
    shapes = net.trace_shapes(params)
    keys = jax.random.split(key, net.depth)
    return tuple(
        Inverse(random_like(keys[l], params[l], scale, dist),
                jnp.zeros(shapes[l].inputs.shape[1:], shapes[l].inputs.dtype))
        if has_inverse(net, l, params[l]) else None
        for l in range(net.depth))


def inverse(net, l: int, inv: Inverse, trace, v: jax.Array) -> jax.Array:
    """g_l(ω_l, c_l, v) = σ(J_l^T(ω_l, v) + c_l), linearised at node l's traced input."""
    back = net.input_vjp(l, inv.omega, trace[l].inputs, v) + inv.bias[None]  # c_l, per example
    return net.input_activation(l)(back)


def reconstruction_loss(inv: Inverse, net, l: int, theta, trace, noise: jax.Array) -> jax.Array:
    """½‖g_l(f_l(a_l(θ_l, z^{l-1}+ε))) − (z^{l-1}+ε)‖², summed over units, mean over the batch."""
    corrupted = trace[l].inputs + noise
    pre = net.pre_activation(l, theta, corrupted)
    recon = inverse(net, l, inv, trace, net.activations[l](pre))
    return 0.5 * jnp.sum((recon - corrupted) ** 2) / corrupted.shape[0]


def reconstruction_gradient(inv: Inverse, net, l: int, theta, trace, noise: jax.Array) -> tuple[Inverse, jax.Array]:
    """∇ of ``reconstruction_loss`` w.r.t. (ω_l, c_l), by hand (two products with a_l's Jacobian), and the loss.

    With u = J_l^T(ω, v) + c and r = ∂loss/∂u, ∂loss/∂c = Σ_n r and, as ⟨r, J^T(ω)v⟩ =
    ⟨J(ω)r, v⟩, ∂loss/∂ω = vjp_ω(ω ↦ J(ω)·r)(v). Automatic differentiation through the
    vjp gives the same numbers but took 24 ms a step for LeNet-5's second convolution on
    the project's CPU, more than a whole bp step (docs/benchmarks.md).
    """
    corrupted = trace[l].inputs + noise
    v = net.activations[l](net.pre_activation(l, theta, corrupted))  # f_l(a_l(θ_l, z^{l-1}+ε))
    u = net.input_vjp(l, inv.omega, trace[l].inputs, v) + inv.bias[None]
    recon, sigma_pullback = jax.vjp(net.input_activation(l), u)
    r = sigma_pullback((recon - corrupted) / corrupted.shape[0])[0]  # ∂loss/∂u
    _, omega_pullback = jax.vjp(lambda w: net.input_jvp(l, w, trace[l].inputs, r), inv.omega)
    loss = 0.5 * jnp.sum((recon - corrupted) ** 2) / corrupted.shape[0]
    return Inverse(omega_pullback(v)[0], jnp.sum(r, axis=0)), loss


def inverse_gradients(net, params, trace, inverses, key, noise: float) -> tuple[tuple, jax.Array]:
    """Gradients of each inverse's noisy reconstruction loss (None where there is no inverse), and the
    mean of those losses over the inverses (0 without any)."""
    keys = jax.random.split(key, net.depth)
    grads, losses = [], []
    for l, inv in enumerate(inverses):
        if inv is None:
            grads.append(None)
            continue
        eps = noise * jax.random.normal(keys[l], trace[l].inputs.shape, trace[l].inputs.dtype)  # ε ~ N(0, σ²)
        grad, loss = reconstruction_gradient(inv, net, l, params[l], trace, eps)
        grads.append(grad)
        losses.append(loss)
    return tuple(grads), (jnp.mean(jnp.stack(losses)) if losses else jnp.zeros(()))


def difference_targets(net, params, trace, labels, inverses, eta_hat: float) -> tuple:
    """Targets ŷ^l for every hidden node, top down (docs/rules.md#dtp, #graph).

    ŷ^l = z^l + Σ_{c reads l} Δ_c, where Δ_c is, for the output node, −η̂ · J_c^T(θ_c, e) (the
    gradient step of the top hidden target, through the output node's own weights as in
    Lee et al.); for a node with an inverse, g_c(ŷ^c) − g_c(z^c) (the difference correction);
    for a node without weights, J_c^T(ŷ^c − z^c) (its map's transpose: the identity for a sum).
    """
    e = net.loss.error(trace[-1].pre, labels)

    def send(c, target):  # Δ_c, given ŷ^c (for the output node, e)
        if c == net.depth - 1:  # ŷ^{L-1} = z^{L-1} − η̂ · ∂L/∂z^{L-1}, per example
            return -eta_hat * net.input_vjp(c, params[c], trace[c].inputs, e)
        if inverses[c] is not None:  # g_c(ŷ^c) − g_c(z^c): the difference correction
            return inverse(net, c, inverses[c], trace, target) - inverse(net, c, inverses[c], trace, trace[c].out)
        return net.input_vjp(c, params[c], trace[c].inputs, target - trace[c].out)

    # the graph's backward walk: corrections add where paths merge, ŷ^l = z^l + Σ Δ_c
    return walk_down(net, e, send, lambda l, corrections: trace[l].out + corrections)[:-1]


def dtp(
    eta_hat: float = 0.1,
    noise: float = 0.1,
    inverse_lr_scale: float = 1.0,
    inverse_scale: float = 1.0,
    inverse_dist: str = "normal",
) -> LearningRule:
    """Difference target propagation with learned inverses.

    The inverses are the rule's trainable parameters: the run's optimiser and schedule train
    them on their noisy reconstruction loss, reported per epoch as ``reconstruction``.

    Args:
      eta_hat: η̂, the step of the top hidden target down the gradient: ŷ^{L-1} = z^{L-1} − η̂·∂L/∂z^{L-1}.
      noise: σ of the Gaussian noise ε the inverses learn to undo.
      inverse_lr_scale: the inverses' learning rate, as a multiple of the run's --lr.
      inverse_scale: ω's initial scale, in units of Glorot's standard deviation.
      inverse_dist: ω's initial distribution, ``normal`` or ``uniform``.
    """
    check_distribution(inverse_dist, "dtp option inverse_dist")
    eta_hat, noise, inverse_lr_scale = (number("dtp", n, v, minimum=0) for n, v in (
        ("eta_hat", eta_hat), ("noise", noise), ("inverse_lr_scale", inverse_lr_scale)))
    inverse_scale = number("dtp", "inverse_scale", inverse_scale, minimum=0, exclusive=True)

    def init_params(key, net, params):
        return init_inverses(key, net, params, inverse_scale, inverse_dist)

    def compute_targets(net, params, trace, labels, state, rule_params):
        e = net.loss.error(trace[-1].pre, labels)
        if net.depth == 1:
            return (e,), state
        targets = difference_targets(net, params, trace, labels, rule_params, eta_hat)
        # hidden loss ½‖z^l − ŷ^l‖²: δ^l = f'(h^l) ⊙ (z^l − ŷ^l); the output node uses the task loss
        deltas = tuple(net.activation_vjp(l, trace[l].pre, trace[l].out - y) for l, y in enumerate(targets))
        return deltas + (e,), state

    def local_update(net, params, trace, deltas, state, rule_params, key):
        grads, loss = inverse_gradients(net, params, trace, rule_params, key, noise)  # ε drawn from the step's key
        return Updates(updates_from_deltas(net, params, trace, deltas), grads, {"reconstruction": loss}), state

    return LearningRule(stateless_init, compute_targets, local_update, init_params=init_params,
                        metrics=("reconstruction",), params_lr=inverse_lr_scale)


@hookimpl
def ngf_register_rules():
    """Register ``dtp``."""
    return {"dtp": dtp}
