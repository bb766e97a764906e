"""Forward gradients: weight perturbation (Baydin et al. 2022) and activity perturbation with local
losses (Ren et al. 2023) (``fg``).

docs/rules.md#fg. A forward gradient replaces the gradient ∇L by (∇L · t) t for a random tangent
t ~ N(0, I): unbiased, since E[t tᵀ] = I, and its directional derivative ∇L · t comes from ONE
forward-mode pass (``jax.jvp``), no backward pass. K tangents per step are averaged.

``mode=weights``, Baydin, Pearlmutter, Syme, Wood & Torr 2022, "Gradients without
backpropagation" (arXiv:2202.08587), their Algorithm 1: v ~ N(0, I) shaped like ALL the forward
parameters θ (one draw per step, shared by the batch), d = ∇L(θ) · v by one jvp of the batch loss
L = mean_n L(h^L_n, y_n) (the network's --loss), and the update g = d v. The rule runs its own pass
(the jvp's primal gives the logits). Reported: ``batch_loss`` (L) and ``grad_norm``, √(mean_k d_k²),
an estimate of ‖∇L‖ (E d² = ‖∇L‖²).

``mode=activity``, Ren, Kornblith, Liao & Hinton 2023, "Scaling forward gradient with local losses"
(ICLR 2023, arXiv:2210.03310); authors' code github.com/google-research/google-research,
``local_forward_gradient/train_mixer_supervised.py`` (``update_forward_grad_activations``, ``loss``,
``sample_activation_noise``), ``spatial_avg_linear_v2.py`` and ``mixer_lib.py``. Each hidden node l
with weights has a local head (the rule's trainable parameters) and a per-example local loss

    ℓ_l,n = CE(W_l q(z^l_n) + b_l, y_n),   q(z) = the spatial mean of LN(z), flattened

(LN: layer norm without gain over the last axis, their ``inter_ln``; the spatial mean over a feature
map's positions is their head's average over tokens). Each example gets its own tangent u_n at the
node's pre-activation h^l (where their noise enters, before the ReLU), and

    ũ_n = m ⊙ u_n,  m = 1[f_l'(h^l) ≠ 0]         (their ReLU mask: units that pass no gradient)
    d_n,g = Σ_{i ∈ g} (∂ℓ_l,n/∂q_i) q̇_n,i          q̇ = jvp of q ∘ f_l at h^l with ũ, all examples at once
    δ^l_n,i = d_n,g(i) ũ_n,i,  θ_l's update = net.param_vjp at u^l (gradients stop at the node's input)

g runs over G groups of channels (their group-wise local losses, one shared head: each group its
own directional derivative; G = 1: d_n = ∂ℓ_l,n/∂h^l_n · ũ_n, the whole jvp). ∂ℓ/∂q is the linear
head's own derivative W(softmax − onehot), as their fused jvp (``spatial_avg_linear_v2.py``) uses.

(``perturb=out``: the tangent at z^l instead, d_n = ∂ℓ_l,n/∂z^l_n · u_n, δ^l = f_l'(h^l) ⊙ d u).
m needs no backward pass: f' comes from a jvp of f_l, the derivative for the elementwise activations
ngf's models have. The heads learn from their exact local gradient ∂ℓ_l/∂(W_l, b_l) (their
``local_classif_grad``), at ``head_lr`` × --lr (their ``head_lr``); W_l starts N(0, s²) with
s = head_scale · min(2/√fan_in, 0.1) (their ``kaiming`` scheme), b_l at zero. The output node learns
from e, δ^L = e (their readout's exact gradient, ``global_classif_grad``). Weightless nodes (resnet's
sums) have no update and no head. Reported: ``local_loss``, the mean of ℓ_l over the heads.

Differences from their code are listed in docs/rules.md#fg (LocalMixer blocks, groups and patches,
the forward pass's layer norms, the readout's 0.1 lr). Locality: in activity mode node l's update
reads θ_l (its own vjp), its head, the labels and the trace only. Weight mode's d is one scalar that
every node's update reads, made by a forward pass through all the weights (never transposed).
"""

import math

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from ngf.core.checks import number
from ngf.core.errors import NgfError
from ngf.core.network import updates_from_deltas
from ngf.core.rule import LearningRule, Updates, stateless_init
from ngf.host.hookspecs import hookimpl
from ngf.plugins.local_loss import pred_features

MODES = ("activity", "weights")
PERTURB = ("pre", "out")


def layer_norm(z: jax.Array, eps: float = 1e-5) -> jax.Array:
    """(z − mean) / √(var + ε) over the last axis, no gain or bias (their ``mixer_lib.layer_norm``)."""
    mean = jnp.mean(z, axis=-1, keepdims=True)
    return (z - mean) * jax.lax.rsqrt(jnp.var(z, axis=-1, keepdims=True) + eps)


def head_features(z: jax.Array, norm: bool, limit: int) -> jax.Array:
    """q(z): LN over the last axis (if ``norm``), then a feature map's spatial mean (``limit`` 0) or
    local-loss's average pooling to at most ``limit`` features, flattened to [batch, features]."""
    z = layer_norm(z) if norm else z
    if limit:
        return pred_features(z, limit)
    return (z.mean(axis=tuple(range(1, z.ndim - 1))) if z.ndim > 2 else z).reshape(z.shape[0], -1)


def head_ce(q: jax.Array, head: dict, labels: jax.Array) -> jax.Array:
    """CE(W q_n + b, y_n) per example, [batch], for features q [batch, features]."""
    logits = q @ head["w"] + head["b"][None, :]
    return -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1)[:, 0]


def head_losses(z: jax.Array, head: dict, labels: jax.Array, norm: bool, limit: int) -> jax.Array:
    """ℓ_n = CE(W q(z_n) + b, y_n) per example, [batch]."""
    return head_ce(head_features(z, norm, limit), head, labels)


def init_heads(key, net, params, scale: float, norm: bool, limit: int) -> tuple:
    """A head {w: [features, classes], b} for each hidden node with weights (None elsewhere and for the
    output node), w ~ N(0, s²) with s = scale · min(2/√features, 0.1) (the authors' ``kaiming``)."""
    shapes = net.trace_shapes(params)
    n_classes = shapes[-1].pre.shape[-1]
    keys = jax.random.split(key, net.depth)
    heads = []
    for l, t in enumerate(shapes[:-1]):
        if not jax.tree.leaves(params[l]):
            heads.append(None)
            continue
        size = jax.eval_shape(lambda z: head_features(z, norm, limit), t.out).shape[-1]
        std = scale * min(2.0 / math.sqrt(size), 0.1)
        heads.append({"w": std * jax.random.normal(keys[l], (size, n_classes), t.out.dtype),
                      "b": jnp.zeros((n_classes,), t.out.dtype)})
    return tuple(heads) + (None,)


def activity_tangents(key, trace, heads, k: int) -> tuple:
    """u ~ N(0, I), [K, *h^l.shape] (one per tangent and example) for each node with a head (None elsewhere):
    slices, in node order, of ONE draw [K, batch, Σ_l size(h^l_n)], so one random kernel to compile."""
    sizes = [0 if h is None else math.prod(t.pre.shape[1:]) for h, t in zip(heads, trace)]
    flat = jax.random.normal(key, (k, trace[0].pre.shape[0], sum(sizes)), trace[-1].pre.dtype)
    starts = [sum(sizes[:l]) for l in range(len(sizes))]
    return tuple(None if h is None else flat[..., s:s + n].reshape((k,) + t.pre.shape)
                 for h, t, s, n in zip(heads, trace, starts, sizes))


def node_signal(net, l: int, t, head, labels, u, perturb: str, groups: int, norm: bool, limit: int):
    """δ^l = mean_k d_k ũ_k for node l: ũ_k at h^l masked by f_l' ≠ 0 (``pre``) or u_k at z^l (``out``,
    then through f_l'); d_{k,n,g} = Σ_{i ∈ g} (∂ℓ_n/∂q_i) q̇_{k,n,i}, q̇_k the jvp of the head's features
    q with tangent ũ_k, split by groups of channels (feature i's channel c in group ⌊c G / C⌋)."""
    if perturb == "pre":
        slope = jax.jvp(net.activations[l], (t.pre,), (jnp.ones_like(t.pre),))[1]  # f_l'(h^l), elementwise f
        u = u * (slope != 0)[None]  # ũ = m ⊙ u: the authors' ReLU mask
        point, features = t.pre, (lambda h: head_features(net.activations[l](h), norm, limit))
    else:
        point, features = t.out, (lambda z: head_features(z, norm, limit))
    q, q_dot = jax.vmap(lambda tangent: jax.jvp(features, (point,), (tangent,)), out_axes=(None, 0))(u)
    c = jax.grad(lambda feats: jnp.sum(head_ce(feats, head, labels)))(q)  # ∂ℓ_n/∂q_n, the linear head's own
    channels = u.shape[-1]
    group = jnp.arange(q.shape[-1]) % channels * groups // channels  # the group of feature i's channel
    d = (q_dot * c[None]) @ (group[:, None] == jnp.arange(groups)[None, :]).astype(c.dtype)  # [K, B, G]
    per_unit = d[..., jnp.arange(channels) * groups // channels]  # [K, B, C]: d of each channel's group
    g = jnp.mean(per_unit.reshape(per_unit.shape[:2] + (1,) * (u.ndim - 3) + (channels,)) * u, axis=0)
    return g if perturb == "pre" else net.activation_vjp(l, t.pre, g)


def activity_signals(net, trace, labels, heads, key, k: int, perturb: str, groups: int, norm: bool, limit: int):
    """Per-example δ^l of every node (e at the output, 0 at weightless nodes), the heads' exact
    gradients ∂ℓ_l/∂(W_l, b_l), and the mean of the ℓ_l over the heads (0 without any)."""
    tangents = activity_tangents(key, trace, heads, k)
    deltas, grads, losses = [], [], []
    for l, (head, u) in enumerate(zip(heads[:-1], tangents)):
        if head is None:  # a weightless node: no update of its own, no head
            deltas.append(jnp.zeros_like(trace[l].pre))
            grads.append(None)
            continue
        deltas.append(node_signal(net, l, trace[l], head, labels, u, perturb, groups, norm, limit))
        value, grad = jax.value_and_grad(lambda w: jnp.mean(head_losses(trace[l].out, w, labels, norm, limit)))(head)
        grads.append(grad)  # the head's own, exact local gradient
        losses.append(value)
    e = net.loss.error(trace[-1].pre, labels)  # δ^L = e: the output node learns from the task loss
    mean = jnp.mean(jnp.stack(losses)) if losses else jnp.zeros(())
    return tuple(deltas) + (e,), tuple(grads) + (None,), mean


def weight_gradient(net, params, x, labels, key, k: int):
    """Baydin et al.'s forward gradient g = mean_k (∇L · v_k) v_k, v_k ~ N(0, I) over all of θ (the
    flattened parameters, ``ravel_pytree``'s order), by one jvp of the batch loss per tangent; and
    L, √(mean_k d_k²) and the logits."""
    flat, unravel = ravel_pytree(params)
    v = jax.random.normal(key, (k,) + flat.shape, flat.dtype)

    def batch_loss(theta):
        logits = net.logits(unravel(theta), x)
        return jnp.mean(net.loss.per_example(logits, labels)), logits

    def directional(tangent):  # (L, d = ∇L · v, logits): the primal does not depend on v
        loss, d, logits = jax.jvp(batch_loss, (flat,), (tangent,), has_aux=True)
        return loss, d, logits

    loss, d, logits = jax.vmap(directional, out_axes=(None, 0, None))(v)
    g = jnp.mean(d[:, None] * v, axis=0)  # g = d v, averaged over the K tangents
    return unravel(g), loss, jnp.sqrt(jnp.mean(d ** 2)), logits


def check_options(mode, tangents, perturb, head_scale, head_lr, pool_to) -> tuple:
    """The options, checked: an ``NgfError`` of one line naming the option and its valid values."""
    if mode not in MODES:
        raise NgfError(f"fg option mode: unknown mode {mode!r}; valid modes: {', '.join(MODES)}")
    if perturb not in PERTURB:
        raise NgfError(f"fg option perturb: unknown place {perturb!r}; valid places: {', '.join(PERTURB)}")
    return (number("fg", "tangents", tangents, minimum=1, integer=True),
            number("fg", "head_scale", head_scale, minimum=0), number("fg", "head_lr", head_lr, minimum=0),
            number("fg", "pool_to", pool_to, minimum=0, integer=True))


def fg(mode: str = "activity", tangents: int = 1, perturb: str = "pre", groups: int = 128, head_scale: float = 1.0,
       head_lr: float = 1.0, head_norm: bool = True, pool_to: int = 0) -> LearningRule:
    """Forward gradients: weight perturbation (Baydin et al. 2022) or activity perturbation with local
    heads (Ren et al. 2023).

    ``mode=activity`` reports the mean local loss as ``local_loss``; ``mode=weights`` the batch loss
    as ``batch_loss`` and √(mean d²), an estimate of ‖∇L‖, as ``grad_norm``.

    Args:
      mode: ``activity`` (a tangent per example at each hidden node, local heads) or ``weights`` (one over all θ).
      tangents: K, the tangents per step; their forward gradients are averaged.
      perturb: activity mode's tangent at h^l, masked where f' = 0 (``pre``, the authors'), or at z^l (``out``).
      groups: G, activity mode's groups of a node's last axis, each with its own directional derivative.
      head_scale: the heads' initial std, in units of min(2/√fan_in, 0.1) (the authors' kaiming; 0: zeros).
      head_lr: the heads' learning rate, as a multiple of --lr.
      head_norm: layer-normalise (no gain) a node's output over its last axis before its head (their inter_ln).
      pool_to: 0: a head reads a feature map's spatial mean (the authors'); n > 0: local-loss's pooling to ≤ n.
    """
    tangents, head_scale, head_lr, pool_to = check_options(mode, tangents, perturb, head_scale, head_lr, pool_to)
    groups = number("fg", "groups", groups, minimum=1, integer=True)
    if not isinstance(head_norm, bool):
        raise NgfError(f"fg option head_norm must be true or false, got {head_norm!r}")
    if mode == "weights":
        return weight_rule(tangents)

    def init_params(key, net, params):
        return init_heads(key, net, params, head_scale, head_norm, pool_to)

    def compute_targets(net, params, trace, labels, state, rule_params, key):
        return activity_signals(net, trace, labels, rule_params, key, tangents, perturb, groups, head_norm,
                                 pool_to), state

    def local_update(net, params, trace, signals, state):
        deltas, grads, mean = signals  # the heads' gradients came with the signals
        return Updates(updates_from_deltas(net, params, trace, deltas), grads, {"local_loss": mean}), state

    return LearningRule(stateless_init, compute_targets, local_update, init_params=init_params,
                        metrics=("local_loss",), params_lr=head_lr, params_decay=True)


def weight_rule(tangents: int) -> LearningRule:
    """``fg`` with ``mode=weights``: its own jvp pass (``uses_trace=False``), no trainable parameters."""

    def compute_targets(net, params, trace, labels, state, x, key):
        return weight_gradient(net, params, x, labels, key, tangents), state

    def local_update(net, params, trace, signals, state):
        g, loss, norm, logits = signals
        return Updates(g, metrics={"batch_loss": loss, "grad_norm": norm}, logits=logits), state

    return LearningRule(stateless_init, compute_targets, local_update, metrics=("batch_loss", "grad_norm"),
                        uses_trace=False)


@hookimpl
def ngf_register_rules():
    """Register ``fg``."""
    return {"fg": fg}
