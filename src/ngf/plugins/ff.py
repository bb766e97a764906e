"""Forward-Forward (``ff``), Hinton 2022 (docs/rules.md#ff).

Hinton, "The Forward-Forward algorithm: some preliminary investigations" (arXiv:2212.13345), §3.3
(the supervised MNIST example); the public port the docs follow where the paper is silent is
github.com/loeweX/Forward-Forward (``src/ff_model.py``, ``src/ff_mnist.py``, ``config.yaml``).

Data. Positive data x⁺ is x with its first C inputs (the image's first row) replaced by onehot(y);
negative data x⁻ the same with a wrong label ỹ ≠ y, drawn per example uniformly over the C − 1
wrong labels (``negatives=random``) or in proportion to the network's goodness for them
(``negatives=hard``, the paper's hard negatives); the neutral input x° carries 1/C in each.

Passes. Every node reads its input length-normalised, u^l/ρ(u^l) with ρ(u) = √(mean u²) (the port's
``_layer_norm``; node 0 reads the embedded image normalised too), with gradients stopped there, so
node l's loss reaches θ_l only:

    z^l = f_l(a_l(θ_l, sg(u^l / ρ(u^l))))                     u^l = Σ_{k ∈ P(l)} z^k, u^0 = x
    G_l = Σ_j (z^l_j)²   (``goodness=sum``)   or   mean_j (z^l_j)²   (``goodness=mean``)
    loss_l = ½ [mean⁺ softplus(θ_l − G_l⁺) + mean⁻ softplus(G_l⁻ − θ_l)]     (BCE of G_l − θ_l)

for every node with weights below the output node (the FF nodes), θ_l = ``theta`` × units(z^l)
for ``sum`` (the port's ``sum_of_squares − z.shape[1]``) and ``theta`` for ``mean``. The
activation's derivative is taken as 1 (``activation_grad=full``: the port's ``ReLU_full_grad``) or
as it is (``exact``). ``peer`` adds the port's peer normalisation to each FF node, peer × mean_j
(m̄ − m_j)², m ← 0.9 m + 0.1 mean⁺ z^l (running mean of the positive activity, in the state).

Prediction (``predict``). ``goodness``: embed each label c in turn and take argmax_c Σ G_l over the
counted FF nodes (the paper's classifier, the port's ``forward_downstream_multi_pass``); ``head``: a
linear softmax head, no bias, zeros at start (the port's ``linear_classifier``), on the concatenated
normalised outputs of the counted nodes under the neutral input, trained by cross-entropy as a rule
parameter at ``head_lr`` × --lr (the port's downstream lr 1e-2 against 1e-3). The counted nodes are
the FF nodes from the ``count_from``-th on (by default all but the first, the paper's; the only
one if there is one). The model's own
output node learns as a linear classifier too, from the run's loss on the normalised neutral
output of the top FF node: the training loss and accuracy are its (or the head's, for ``head``).

Refused: a model whose first node outputs a feature map (a convolution reads the label's C inputs
at one corner of the image only, so most of its units never see the label), and a model with no
hidden node.

Locality: node l's loss is a function of θ_l and of its input, held fixed (a stop-gradient); no
update reads another node's forward weights, forward or transposed.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ngf.core.checks import number
from ngf.core.errors import NgfError
from ngf.core.rule import LearningRule, Updates
from ngf.host.hookspecs import hookimpl

NEGATIVES = ("random", "hard")
GOODNESS = ("sum", "mean")
PREDICT = ("goodness", "head")
ACTIVATION_GRAD = ("full", "exact")
EPS = 1e-8  # the port's _layer_norm eps
PEER_MOMENTUM = 0.9  # the port's model.momentum


def embed(x: jax.Array, code: jax.Array) -> jax.Array:
    """x with its first C inputs (flattened order) replaced by ``code`` [batch, C]."""
    flat = x.reshape(x.shape[0], -1)
    return flat.at[:, :code.shape[1]].set(code.astype(flat.dtype)).reshape(x.shape)


def normalised(u: jax.Array) -> jax.Array:
    """u / (√(mean u²) + ε) over each example's features: length-normalised, mean square 1."""
    axes = tuple(range(1, u.ndim))
    return u / (jnp.sqrt(jnp.mean(u ** 2, axis=axes, keepdims=True)) + EPS)


def straight_through(f, h: jax.Array) -> jax.Array:
    """f(h) forward, the identity's derivative backward (the port's ReLU_full_grad)."""
    return h + jax.lax.stop_gradient(f(h) - h)


def ff_nodes(params) -> tuple:
    """The nodes FF trains by goodness: those with weights, the output node excepted."""
    return tuple(l for l, theta in enumerate(params[:-1]) if jax.tree.leaves(theta))


def run_nodes(net, params, x: jax.Array, full_grad: bool) -> tuple:
    """The outputs z^l of every node for the embedded input x, each node reading its input
    normalised and with gradients stopped there; and the last node's input, normalised."""
    outs, last = [], net.depth - 1
    for l in range(net.depth):
        u = jax.lax.stop_gradient(normalised(net.node_input(l, x, outs)))  # sg(u^l / ρ(u^l))
        if l == last:
            return tuple(outs), u
        h = net.pre_activation(l, params[l], u)
        f = net.activations[l]
        outs.append(straight_through(f, h) if full_grad else f(h))


def goodness(z: jax.Array, kind: str) -> jax.Array:
    """G_l = Σ_j z_j² (``sum``) or mean_j z_j² (``mean``), per example."""
    squares = (z ** 2).reshape(z.shape[0], -1)
    return squares.sum(1) if kind == "sum" else squares.mean(1)


def threshold(z: jax.Array, kind: str, theta: float) -> float:
    """θ_l: ``theta`` × units for ``sum``, ``theta`` for ``mean``."""
    return theta * z[0].size if kind == "sum" else theta


def ff_loss(z_pos, z_neg, kind: str, theta: float) -> jax.Array:
    """loss_l = ½[mean softplus(θ_l − G⁺) + mean softplus(G⁻ − θ_l)] (BCE of G − θ_l over both halves)."""
    t = threshold(z_pos, kind, theta)
    return 0.5 * (jnp.mean(jax.nn.softplus(t - goodness(z_pos, kind)))
                  + jnp.mean(jax.nn.softplus(goodness(z_neg, kind) - t)))


def peer_loss(z_pos, mean: jax.Array) -> tuple:
    """mean_j (m̄ − m_j)² with m ← 0.9 sg(m) + 0.1 mean⁺ z (the port's peer normalisation); the new m."""
    m = PEER_MOMENTUM * mean + (1 - PEER_MOMENTUM) * z_pos.mean(0)
    return jnp.mean((jnp.mean(m) - m) ** 2), jax.lax.stop_gradient(m)


def label_scores(net, params, x: jax.Array, n_classes: int, kind: str, counted: tuple) -> jax.Array:
    """Σ_{l counted} G_l for x embedded with each label c in turn: [batch, C] (the goodness classifier)."""
    def for_label(c):
        outs, _ = run_nodes(net, params, embed(x, jnp.broadcast_to(jax.nn.one_hot(c, n_classes), (x.shape[0], n_classes))), False)
        return sum(goodness(outs[l], kind) for l in counted)

    return jax.vmap(for_label, out_axes=1)(jnp.arange(n_classes))


def neutral(x: jax.Array, n_classes: int) -> jax.Array:
    """x°: x with 1/C in each of the label's C inputs."""
    return embed(x, jnp.full((x.shape[0], n_classes), 1.0 / n_classes, x.dtype))


def head_features(outs, counted: tuple) -> jax.Array:
    """The head's input: the counted nodes' outputs, normalised, flattened and concatenated."""
    return jnp.concatenate([normalised(outs[l]).reshape(outs[l].shape[0], -1) for l in counted], axis=1)


def negative_labels(key, net, params, x, labels, n_classes: int, negatives: str, kind: str, counted) -> jax.Array:
    """ỹ ≠ y per example: uniform over the wrong labels, or ∝ exp(goodness) over them (``hard``)."""
    if negatives == "random":
        return (labels + jax.random.randint(key, labels.shape, 1, n_classes)) % n_classes
    scores = jax.lax.stop_gradient(label_scores(net, params, x, n_classes, kind, counted))
    wrong = jnp.where(jax.nn.one_hot(labels, n_classes, dtype=bool), -jnp.inf, scores)
    return jax.random.categorical(key, wrong, axis=1)


class Settings(NamedTuple):
    """ff's options, checked."""

    theta: float
    goodness: str
    negatives: str
    predict: str
    count_from: int | None
    full_grad: bool
    peer: float


def counted_nodes(params, count_from: int | None) -> tuple:
    """The FF nodes whose goodness the prediction sums and the head reads: from the ``count_from``-th on
    (None: all but the first, or the only one)."""
    nodes = ff_nodes(params)
    return nodes[(1 if len(nodes) > 1 else 0) if count_from is None else count_from:]


def step_loss(net, params, head, x, labels, wrong, means, s: Settings):
    """The step's objective: Σ_l loss_l (+ peer terms) over the FF nodes, the output node's loss on x°,
    and the head's cross-entropy; each term reaches its own parameters only. Aux: metrics, logits, means."""
    n_classes = net.trace_shapes(params)[-1].pre.shape[-1]
    onehot = lambda c: jax.nn.one_hot(c, n_classes, dtype=x.dtype)
    both, _ = run_nodes(net, params, jnp.concatenate([embed(x, onehot(labels)), embed(x, onehot(wrong))]),
                        s.full_grad)  # x⁺ and x⁻ in one pass of 2B examples, as the port's torch.cat
    pos, neg = [z[:x.shape[0]] for z in both], [z[x.shape[0]:] for z in both]
    rest, top = run_nodes(net, params, neutral(x, n_classes), s.full_grad)
    nodes, means = ff_nodes(params), list(means)
    losses = [ff_loss(pos[l], neg[l], s.goodness, s.theta) for l in nodes]
    total = sum(losses)
    if s.peer > 0:
        for l in nodes:
            value, means[l] = peer_loss(pos[l], means[l])
            total = total + s.peer * value
    logits = net.pre_activation(net.depth - 1, params[-1], top)  # the output node on sg(z°/ρ(z°))
    total = total + jnp.mean(net.loss.per_example(logits, labels))
    if s.predict == "head":  # the head on the neutral pass, its input detached (the port's no_grad)
        logits = jax.lax.stop_gradient(head_features(rest, counted_nodes(params, s.count_from))) @ head
        total = total - jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))
    metrics = {"ff_loss": jnp.mean(jnp.stack(losses)),
               "goodness_pos": jnp.mean(jnp.stack([goodness(pos[l], s.goodness).mean() for l in nodes])),
               "goodness_neg": jnp.mean(jnp.stack([goodness(neg[l], s.goodness).mean() for l in nodes]))}
    return total, (metrics, jax.lax.stop_gradient(logits), tuple(means))


def check_model(net, params, count_from: int | None) -> None:
    """Refuse, in one line, a model ff does not apply to."""
    shapes = net.trace_shapes(params)
    n_classes, features = shapes[-1].pre.shape[-1], math.prod(shapes[0].inputs.shape[1:])
    if shapes[0].out.ndim > 2:
        raise NgfError(f"ff: the model's first node outputs a feature map {tuple(shapes[0].out.shape[1:])}, and a "
                       f"convolution reads ff's label (the first {n_classes} inputs) at one corner of the image only; "
                       "use a model whose first node is dense (mlp)")
    if features <= n_classes:
        raise NgfError(f"ff: the input has {features} features, too few to carry the {n_classes} label inputs")
    nodes = ff_nodes(params)
    if not nodes:
        raise NgfError("ff: the model has no hidden node with weights to train by goodness; give it hidden widths")
    if count_from is not None and len(nodes) <= count_from:
        raise NgfError(f"ff: the model has {len(nodes)} hidden node(s) with weights and count_from={count_from} "
                       "leaves none to count; lower count_from or add hidden widths")


def ff(theta: float = 1.0, goodness: str = "sum", negatives: str = "random", predict: str = "goodness",
       count_from: int | None = None, activation_grad: str = "full", peer: float = 0.03, head_lr: float = 10.0) -> LearningRule:
    """Forward-Forward: each hidden node raises its goodness on positive data and lowers it on negative.

    Reports the FF nodes' mean loss (``ff_loss``) and goodness of the positive and negative data
    (``goodness_pos``, ``goodness_neg``). Refuses a model whose first node is a convolution.

    Args:
      theta: the threshold θ, per unit for goodness=sum (θ_l = theta × units, the port's), as it is for mean.
      goodness: G_l, ``sum`` or ``mean`` of the squared outputs of the node.
      negatives: the wrong labels of negative data, ``random`` (uniform) or ``hard`` (∝ exp of their goodness).
      predict: ``goodness`` (argmax over labels of the counted nodes' goodness) or ``head`` (a linear head on x°).
      count_from: the first hidden node with weights (0-based) that counts; default all but the first (if more).
      activation_grad: the activation's derivative in a node's loss: ``full`` (taken as 1, the port's) or ``exact``.
      peer: the weight of the port's peer normalisation of each node's mean activity (0: none).
      head_lr: the head's learning rate as a multiple of --lr (predict=head; the port's 1e-2 / 1e-3).
    """
    s = Settings(number("ff", "theta", theta, minimum=0), choice("goodness", goodness, GOODNESS),
                 choice("negatives", negatives, NEGATIVES), choice("predict", predict, PREDICT),
                 None if count_from is None else number("ff", "count_from", count_from, minimum=0, integer=True),
                 choice("activation_grad", activation_grad, ACTIVATION_GRAD) == "full",
                 number("ff", "peer", peer, minimum=0))
    head_lr = number("ff", "head_lr", head_lr, minimum=0)

    def init(key, net, params):
        check_model(net, params, s.count_from)
        shapes = net.trace_shapes(params)  # peer's running means m, one per unit, at the port's 0.5
        return tuple(jnp.full(shapes[l].out.shape[1:], 0.5, shapes[l].out.dtype) if l in ff_nodes(params) else None
                     for l in range(net.depth))

    def init_params(key, net, params):
        shapes = net.trace_shapes(params)
        size = sum(math.prod(shapes[l].out.shape[1:]) for l in counted_nodes(params, s.count_from))
        return jnp.zeros((size, shapes[-1].pre.shape[-1]), shapes[-1].pre.dtype)  # the port's zero init

    def compute_targets(net, params, trace, labels, state, x, key, rule_params=None):
        n_classes = net.trace_shapes(params)[-1].pre.shape[-1]
        wrong = negative_labels(key, net, params, x, labels, n_classes, s.negatives, s.goodness,
                                counted_nodes(params, s.count_from))
        objective = jax.grad(step_loss, argnums=(1, 2), has_aux=True)
        (grads, head_grad), (metrics, logits, means) = objective(net, params, rule_params if s.predict == "head" else None, x, labels, wrong, state, s)
        return (grads, head_grad, metrics, logits), means

    def local_update(net, params, trace, signals, state):
        grads, head_grad, metrics, logits = signals
        return Updates(grads, head_grad, metrics, logits), state

    def scores(net, params, x, state, rule_params=None):
        counted = counted_nodes(params, s.count_from)
        n_classes = net.trace_shapes(params)[-1].pre.shape[-1]
        if s.predict == "goodness":
            return label_scores(net, params, x, n_classes, s.goodness, counted)
        return head_features(run_nodes(net, params, neutral(x, n_classes), False)[0], counted) @ rule_params

    return LearningRule(init, compute_targets, local_update, init_params=init_params if s.predict == "head" else None,
                        predict=scores, metrics=("ff_loss", "goodness_pos", "goodness_neg"), uses_trace=False,
                        params_lr=head_lr, params_decay=True)


def choice(name: str, value, valid: tuple) -> str:
    """``value`` if it is one of ``valid``; else a one-line NgfError listing them."""
    if value not in valid:
        raise NgfError(f"ff option {name}: unknown value {value!r}; valid: {', '.join(valid)}")
    return value


@hookimpl
def ngf_register_rules():
    """Register ``ff``."""
    return {"ff": ff}
