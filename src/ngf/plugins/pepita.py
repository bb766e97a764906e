"""PEPITA (``pepita``), Dellaferrera & Kreiman 2022, ICML (docs/rules.md#pepita).

"Present the Error to Perturb the Input To modulate Activity": no backward pass at all.
Pass 1 is the engine's forward trace, z^l and e = softmax(h^L) − onehot(y). Pass 2 runs
the whole network forward again on the input moved by the error,

    x' = x + F e,    F fixed random, [size(x), n_classes]  (reshaped to x's shape),

and gives z'^l and each node's pass-2 input u'^l. The signals are

    δ^l = z^l − z'^l   (hidden nodes: the change of the node's OUTPUT, no f' applied)
    δ^L = e            (the output node)

and each update is vjp_θ a_l(θ_l, u'^l)(δ^l), taken at the PASS-2 input (x' for the
node reading the input): for a dense node ΔW_l = (z^l − z'^l) ⊗ u'^l, batch-averaged,
the paper's ΔW_l = (h_l − h_l^err) ⊗ h_{l−1}^err. The paper applies W ← W − η ΔW, so
ΔW goes to the optimiser as a gradient (descent) unchanged. On a graph the same holds
node by node; a weightless node (a sum) gets an empty update.

Images ([N, H, W, C]): F e has size(x) = H·W·C entries per example and is reshaped to
x's shape, as in the authors' code (``error_input.reshape_as(inputs)``); F's entries are
i.i.d., so the order in which its rows meet the pixels does not matter.

F's scale. The paper draws F uniform in ±0.05·sqrt(6/d_in) (d_in = size(x); the
authors' ``Bstd 0.05``) and trains with SGD and momentum, under which the hidden
updates are O(F) small beside the output node's. ngf's default optimiser, Adam,
normalises every coordinate's step, so F's scale no longer sets how fast hidden nodes
learn, only how far pass 2 moves them. At 0.05 the default mlp's first layer's weights
grew 27-fold in norm in five epochs (13-fold at 0.01), its logits grew into the
thousands and the network fell to 0.81; at either scale, in the first epoch, the rows
of the 67 pixels that are 0 in every MNIST image, which see only F e, moved 4× as far
as the others (Adam makes full-size steps of their tiny updates (z − z')·(F e)). The
default, 0.01, gave 0.974 (0.973, 0.974 with seeds 1, 2; the output node alone, on
the random hidden layers, 0.90); 0.002–0.02 all gave 0.966–0.976 (MNIST,
784-512-512-10 relu, five epochs, Adam 1e-3, batch 64, cosine schedule).

Where it fails: the default cnn (tanh, max pooling) stays at chance under every F scale
tried (0.0005–0.05). In blank image regions a convolution's outputs are exactly equal
(62% of the 2×2 pooling windows after the first convolution, at init), and the max of
perturbed equal values is the largest perturbation, so pooling turns the zero-mean F e
into a positive, label-independent shift of what every later node reads. PEPITA moves
each node toward its pass-2 output; the shift keeps that direction the same from batch
to batch, Adam steps it at full rate, and the first dense node saturates within ~30
steps. The cnn stays at chance also with lr 1e-4, with SGD and momentum at 0.01, and
with relu (whose activations grow without bound instead). The paper's own network, one
5×5 convolution of 32 relu maps, pooling and the dense output node, reached 0.976 in
three epochs, but so did its output node alone (0.977).

Differences from the authors' code (github.com/GiorgiaD/PEPITA): in their dense networks
the output layer learns from the pass-2 error softmax(h'^L) − onehot(y) (``main_pytorch.py``
line 449); here, as in docs/rules.md#pepita, from e (as their conv network's single dense
layer does, lines 441–443). Their convolution update is not ngf's up to a positive factor:
``compute_delta_w_conv`` (``models.py`` lines 56–101) takes +mean_n (z − z') ⊗ u' averaged
over the P output positions, and ``w += eta * delta_w / batch_size`` (``main_pytorch.py``
lines 472–500) divides by the batch N a second time, with the opposite sign to their dense
layers (``delta_w = -(z - z').T @ u'``). ngf's change, −η (1/N) Σ_n Σ_positions (z − z') ⊗ u',
is −N·P times theirs: the other direction, whatever the optimiser (tests/reference/
test_ref_pepita_conv.py); and theirs is 1/(N·P) the size: in a held-out run of their code
the conv kernel's norm stayed at 3.3218 for all three epochs. ngf keeps the paper's sign,
W ← W − η (h − h^err) ⊗ h^err_{l−1}, on every node. With ``--model-opt dropout=P`` both passes
see the step's masks (``Network.thinned``), as in ``main_pytorch.py`` 401–430; their update reads
the Linear outputs before the mask (forward hooks, 272–276), so a dropped unit still learns there,
while here its δ and u' are masked too.

Locality: no signal travels backwards (no J^T, no feedback weights), but pass 2 runs
the network forward with its current weights, so node l's update, through z'^l and
u'^l, reads the forward weights of every node upstream of l. With the pass-1 trace
fixed, changing node k's weights moves the update of exactly the nodes downstream of
k (those that read z^k, directly or through others) and of no other node; the generic
locality test (change node k, no other node's update may move) cannot hold for pepita.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax

from ngf.core.checks import number
from ngf.core.feedback import check_distribution
from ngf.core.rule import LearningRule
from ngf.host.hookspecs import hookimpl


class PepitaState(NamedTuple):
    """F, the fixed random projection of the output error onto the input: [size(x), n_classes]."""

    projection: jax.Array


class PepitaSignals(NamedTuple):
    """Per node: δ^l (z^l − z'^l, e at the output node) and u'^l, its input in pass 2."""

    deltas: tuple
    inputs: tuple


def input_projection(key, net, params, scale: float, dist: str) -> jax.Array:
    """F, [size(x), n_classes]: uniform in ±scale·sqrt(6/size(x)), or normal with the same std."""
    shapes = net.trace_shapes(params)
    d_in, n_classes = math.prod(shapes[0].inputs.shape[1:]), shapes[-1].pre.shape[-1]
    bound = scale * math.sqrt(6.0 / d_in)  # the paper's 0.05 · sqrt(6/d_in), He's uniform bound
    if dist == "uniform":
        return jax.random.uniform(key, (d_in, n_classes), minval=-bound, maxval=bound)
    return bound / math.sqrt(3.0) * jax.random.normal(key, (d_in, n_classes))


def pepita(f_scale: float = 0.01, dist: str = "uniform") -> LearningRule:
    """PEPITA: a second forward pass on x + F e; each hidden node learns from z − z'.

    Args:
      f_scale: F's scale in the paper's units, entries uniform in ±f_scale·sqrt(6/size(x)) (paper 0.05; module notes).
      dist: F's distribution, ``uniform`` (the paper's) or ``normal`` (the same standard deviation).
    """
    check_distribution(dist, "pepita option dist")
    f_scale = number("pepita", "f_scale", f_scale, minimum=0, exclusive=True)

    def init(key, net, params):
        return PepitaState(input_projection(key, net, params, f_scale, dist))

    def compute_targets(net, params, trace, labels, state):
        e = net.loss.error(trace[-1].pre, labels)
        x = trace[0].inputs  # node 0 reads x alone (network.check_reads: it can read nothing else)
        x_mod = x + (e @ state.projection.T).reshape(x.shape).astype(x.dtype)  # x' = x + F e, in x's shape
        _, modulated = net.forward(params, x_mod)  # pass 2: forward only, nothing walks down
        deltas = tuple(t.out - m.out for t, m in zip(trace[:-1], modulated[:-1])) + (e,)
        return PepitaSignals(deltas, tuple(m.inputs for m in modulated)), state

    def local_update(net, params, trace, signals, state):
        batch = trace[0].inputs.shape[0]
        # vjp_θ a_l(θ_l, u'^l)(δ^l), batch-averaged: ΔW_l = (z^l − z'^l) ⊗ z'^{l−1} for a dense node
        return tuple(net.param_vjp(l, params[l], u, d / batch)
                     for l, (u, d) in enumerate(zip(signals.inputs, signals.deltas))), state

    return LearningRule(init, compute_targets, local_update)


@hookimpl
def ngf_register_rules():
    """Register ``pepita``."""
    return {"pepita": pepita}
