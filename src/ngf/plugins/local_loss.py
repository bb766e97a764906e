"""Local losses: pred, sim and predsim (``local-loss``; Nøkland & Eidnes 2019).

docs/rules.md#local-loss. Nøkland & Eidnes 2019, "Training neural networks with local error
signals" (ICML, arXiv:1901.06656); the authors' code is github.com/anokland/local-loss,
``train.py`` (``LocalLossBlockLinear``, ``LocalLossBlockConv``, ``similarity_matrix``).

Every hidden node l with weights has local heads, the rule's trainable parameters, and a local
loss of its output z^l = f_l(h^l), h^l = a_l(θ_l, u^l):

    pred_l    = CE(W_l p(z^l) + b_l, y)                      a linear classifier on the node's output
    sim_l     = mean_ij (S(g_l(z^l)) − S(onehot y))_ij²       the batch's similarity matrices
    predsim_l = (1 − β) pred_l + β sim_l                       β = 0.99 (their ``--beta``)

where S(v)_ij = cos(v_i − mean(v_i), v_j − mean(v_j)), clipped to [−1, 1] (each example's
features centred on their own mean: their ``similarity_matrix``), B×B for a batch of B.

* p (pred's features): the output flattened; an output of rank > 2 (a feature map, channels
  last) is first average-pooled over its spatial axes with a k×k window, k the smallest power of
  two that brings the features to at most ``pool_to`` (their ``--dim-in-decoder``, 4096), zero
  padding split around each axis and counted in the mean (their ``AvgPool2d``). The pooling is
  parameter-free and keyed on the output's rank, not on the layer type. (They double the window's
  height and width in turn; ngf keeps it square.)
* g (sim's features): a learned square map G_l on the feature axis, z^l G_l (their ``linear_loss``
  for dense nodes, a 1×1 convolution on a feature map, where their ``conv_loss`` is a 3×3
  convolution: ngf keeps one head written for every node, a matrix on the last axis); on a feature
  map of more than one position, each channel's standard deviation over the positions (their
  ``similarity_matrix`` default, without ``--no-similarity-std``).
* Heads start as theirs: W_l at zero (``head_scale`` 0; their ``decoder_y.weight.data.zero_()``),
  b_l at zero (theirs PyTorch's default), G_l Glorot normal (``sim_scale`` 1; theirs PyTorch's
  default uniform, of a similar scale). The run's optimiser trains them with the forward weights,
  at ``head_lr`` × --lr (their blocks' one Adam covers both), --weight-decay applying to both.

Gradients stop at each node's input (their ``h_return.detach_()``): node l's update is the
gradient of its own local loss w.r.t. θ_l, u^l held fixed, δ^l = ∂loss_l/∂h^l taken through f_l
and the heads, then ``net.param_vjp``; the heads get ∂loss_l/∂(W_l, b_l, G_l). The output node
learns from the task loss, δ^L = e. Weightless nodes (resnet's sums) have no update and no heads,
δ = 0. The pred loss is cross-entropy whatever --loss is (the paper's), e is --loss's. The
metric ``local_loss`` is the mean of loss_l over the nodes with heads (0 without any).

Differences: ngf's models have no batch normalisation (theirs: batch norm before each nonlinearity,
dropout 0.1–0.2 after it; ngf's mlp and cnn take ``dropout=P`` on their hidden nodes); a rule does
not change the forward pass, so ngf trains the model as it is. Their ``--bio`` variants (feedback-aligned heads, projected targets) and the
unsupervised terms (``--loss-unsup``, ``--alpha``) are not implemented. Their blocks take their
optimiser step inside the forward pass, but each returns its output computed before that step,
so every block reads the step's pre-update outputs, as ngf's one trace does
(tests/reference/test_ref_local_loss.py). Under predsim their output layer learns from the
cross-entropy × (1 − β); ngf's output node from e unscaled (no matter under Adam; × 1/(1 − β)
under SGD).

Locality: node l's update reads θ_l (through its own vjp), its heads and the labels only; it
reads no other node's forward weights, forward or transposed.
"""

import math

import jax
import jax.numpy as jnp

from ngf.core.checks import number
from ngf.core.errors import NgfError
from ngf.core.feedback import random_like
from ngf.core.network import updates_from_deltas
from ngf.core.rule import LearningRule, Updates, stateless_init
from ngf.host.hookspecs import hookimpl

LOSSES = ("pred", "sim", "predsim")


def pool_window(shape: tuple, limit: int) -> int:
    """k, the smallest power of two for which k×k average pooling of a [batch, *spatial, channels]
    output leaves at most ``limit`` features (1 for a rank-2 output)."""
    spatial, channels = shape[1:-1], shape[-1]
    k = 1
    while spatial and channels * math.prod(math.ceil(s / k) for s in spatial) > limit and k < max(spatial):
        k *= 2
    return k


def pred_features(z: jax.Array, limit: int) -> jax.Array:
    """p(z): z average-pooled over its spatial axes to at most ``limit`` features, flattened."""
    k = pool_window(z.shape, limit)
    if k > 1:
        spatial = z.shape[1:-1]
        padded = [k * math.ceil(s / k) for s in spatial]
        z = jnp.pad(z, [(0, 0)] + [((p - s) // 2, p - s - (p - s) // 2) for s, p in zip(spatial, padded)] + [(0, 0)])
        blocks = sum(((p // k, k) for p in padded), ())
        z = z.reshape((z.shape[0],) + blocks + (z.shape[-1],)).mean(axis=tuple(2 + 2 * i for i in range(len(spatial))))
    return z.reshape(z.shape[0], -1)


def sim_features(z: jax.Array, g: jax.Array) -> jax.Array:
    """g(z): z G on the feature (last) axis; on a map of more than one position, each channel's std over them."""
    v = z @ g
    if v.ndim > 2 and math.prod(v.shape[1:-1]) > 1:
        return jnp.sqrt(jnp.var(v.reshape(v.shape[0], -1, v.shape[-1]), axis=1) + 1e-12)  # finite gradient at 0
    return v.reshape(v.shape[0], -1)


def similarity(v: jax.Array) -> jax.Array:
    """S(v): the cosine similarity of the examples' features, each centred on its own mean, in [−1, 1]."""
    centred = v - v.mean(axis=1, keepdims=True)
    squares = jnp.sum(centred ** 2, axis=1, keepdims=True)
    # ‖c‖, with gradient 0 rather than NaN (0/0) at an example whose features are all equal (a dead layer)
    norm = jnp.where(squares > 0, jnp.sqrt(jnp.where(squares > 0, squares, 1.0)), 0.0)
    unit = centred / (1e-8 + norm)
    return jnp.clip(unit @ unit.T, -1.0, 1.0)


def sim_loss(z: jax.Array, g: jax.Array, labels: jax.Array, n_classes: int) -> jax.Array:
    """mean_ij (S(g(z)) − S(onehot y))_ij²."""
    target = similarity(jax.nn.one_hot(labels, n_classes, dtype=z.dtype))
    return jnp.mean((similarity(sim_features(z, g)) - target) ** 2)


def pred_loss(z: jax.Array, w: jax.Array, b: jax.Array, labels: jax.Array, limit: int) -> jax.Array:
    """CE(W p(z) + b, y), averaged over the batch."""
    logits = pred_features(z, limit) @ w + b[None, :]
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))


def node_loss(loss: str, beta: float, limit: int, z, heads, labels, n_classes: int):
    """loss_l of node output z with its heads: pred, sim or (1 − β) pred + β sim."""
    pred = (lambda: pred_loss(z, heads["pred_w"], heads["pred_b"], labels, limit))
    sim = (lambda: sim_loss(z, heads["sim_g"], labels, n_classes))
    if loss == "pred":
        return pred()
    if loss == "sim":
        return sim()
    return (1 - beta) * pred() + beta * sim()


def init_heads(key, net, params, loss: str, limit: int, head_scale: float, sim_scale: float) -> tuple:
    """The heads of each hidden node with weights (None elsewhere, and for the output node)."""
    shapes = net.trace_shapes(params)
    n_classes = shapes[-1].pre.shape[-1]
    keys = jax.random.split(key, 2 * net.depth)
    heads = []
    for l, t in enumerate(shapes[:-1]):
        if not jax.tree.leaves(params[l]):
            heads.append(None)
            continue
        out, dtype, node = t.out.shape, t.out.dtype, {}
        if loss in ("pred", "predsim"):
            k = pool_window(out, limit)
            size = out[-1] * math.prod(math.ceil(s / k) for s in out[1:-1])
            node["pred_w"] = random_like(keys[2 * l], jax.ShapeDtypeStruct((size, n_classes), dtype), head_scale) \
                if head_scale > 0 else jnp.zeros((size, n_classes), dtype)
            node["pred_b"] = jnp.zeros((n_classes,), dtype)
        if loss in ("sim", "predsim"):
            node["sim_g"] = random_like(keys[2 * l + 1], jax.ShapeDtypeStruct((out[-1], out[-1]), dtype), sim_scale)
        heads.append(node)
    return tuple(heads) + (None,)


def local_loss(loss: str = "predsim", beta: float = 0.99, head_scale: float = 0.0, sim_scale: float = 1.0,
               head_lr: float = 1.0, pool_to: int = 4096) -> LearningRule:
    """Local losses at every hidden node, pred, sim or predsim (Nøkland & Eidnes 2019).

    Each hidden node with weights learns from its own loss through its own heads (the rule's
    trainable parameters), its input held fixed; the output node learns from e. Reports the
    mean local loss over the hidden nodes as ``local_loss``.

    Args:
      loss: the local loss, ``pred`` (a linear classifier's cross-entropy), ``sim`` (similarity matching) or ``predsim``.
      beta: β, sim's weight in predsim = (1 − β) pred + β sim (the authors' 0.99).
      head_scale: the pred head's initial scale, in units of Glorot's standard deviation (0: zeros, the authors').
      sim_scale: the sim head G's initial scale, in units of Glorot's standard deviation.
      head_lr: the heads' learning rate, as a multiple of --lr.
      pool_to: the most features the pred head reads; a feature map is average-pooled down to it.
    """
    if loss not in LOSSES:
        raise NgfError(f"local-loss option loss: unknown loss {loss!r}; valid losses: {', '.join(LOSSES)}")
    beta = number("local-loss", "beta", beta, minimum=0, maximum=1)
    head_scale, head_lr = (number("local-loss", n, v, minimum=0) for n, v in
                           (("head_scale", head_scale), ("head_lr", head_lr)))
    sim_scale = number("local-loss", "sim_scale", sim_scale, minimum=0, exclusive=True)
    pool_to = number("local-loss", "pool_to", pool_to, minimum=1, integer=True)

    def init_params(key, net, params):
        return init_heads(key, net, params, loss, pool_to, head_scale, sim_scale)

    def compute_targets(net, params, trace, labels, state, rule_params):
        e = net.loss.error(trace[-1].pre, labels)  # δ^L = e: the output node learns from the task loss
        n_classes, batch = e.shape[-1], e.shape[0]
        deltas, grads, losses = [], [], []
        for l, heads in enumerate(rule_params[:-1]):
            if heads is None:  # a weightless node: no update of its own
                deltas.append(jnp.zeros_like(trace[l].pre))
                grads.append(None)
                continue

            def own_loss(h, heads, l=l):  # loss_l as a function of h^l and the heads; u^l is not in it
                return node_loss(loss, beta, pool_to, net.activations[l](h), heads, labels, n_classes)

            value, (dh, dheads) = jax.value_and_grad(own_loss, argnums=(0, 1))(trace[l].pre, heads)
            deltas.append(batch * dh)  # per-example δ^l; updates_from_deltas averages over the batch
            grads.append(dheads)
            losses.append(value)
        mean = jnp.mean(jnp.stack(losses)) if losses else jnp.zeros(())
        return (tuple(deltas) + (e,), tuple(grads) + (None,), mean), state

    def local_update(net, params, trace, signals, state):
        deltas, grads, mean = signals  # the heads' gradients came with the signals
        return Updates(updates_from_deltas(net, params, trace, deltas), grads, {"local_loss": mean}), state

    return LearningRule(stateless_init, compute_targets, local_update, init_params=init_params,
                        metrics=("local_loss",), params_lr=head_lr, params_decay=True)


@hookimpl
def ngf_register_rules():
    """Register ``local-loss``."""
    return {"local-loss": local_loss}
