"""Direct Kolen–Pollack (``dkp``), Webster, Choi & Ahn (docs/rules.md#dkp).

Webster, Choi & Ahn, "Learning the connections in direct feedback alignment" (2020/21), with
the authors' code at github.com/webstah/dkp-gist (``main.py``, ``utils/gradfunctions.py``,
``networks/conv.py``). The equations, for every hidden node l (the output node has no B):

    δ^L = e = softmax(h^L) − onehot(y)
    δ^l = f_l'(h^l) ⊙ pᵀ(B_l e)                                   (dfa's direct signal)
    ∇B_l = mean_n p(z^l_n) ⊗ e_n   (+ λ_B B_l)                      (B_l: [size(p(z^l)), classes])

i.e. dfa (docs/rules.md#dfa) whose feedback B_l is learned: B_l gets exactly the gradient that a
direct forward connection p(z^l) → h^L, h^L += p(z^l) B_l, would get, averaged over the batch.
It is handed to the run's optimiser as ``Updates.rule_params`` (read as a gradient: the optimiser
subtracts it), so B_l ← B_l − η_B (mean p(z) ⊗ e + λ_B B_l). Where each choice comes from:

- the signal e·B injected at the node's *output*, after the activation, so that it is multiplied
  by f'(h^l) (``networks/conv.py``: the hook sits after ``F.relu``; ``DFAHookFunction.backward``:
  ``grad_at_output.mm(B_view)``);
- B's gradient ``grad_at_output.t().mm(layer_out_view)`` (``utils/gradfunctions.py``): the output
  gradient of the batch-mean cross-entropy (e / batch) times the node's output, i.e. the batch mean
  of e ⊗ z^l, with a plus sign, descended by the optimiser — the sign of a forward weight's gradient;
- B's learning rate: ``--b-lr 1e-4`` against the forward ``--lr 5e-4`` (``main.py``), so
  ``params_lr = 0.2``;
- B's decay: ``optim.Adam(backward_params, weight_decay=1e-6)`` (``main.py``), a coupled L2 term
  λ_B B added to B's gradient, so ``decay = 1e-6``; the forward weights decay with the same 1e-6
  through ``optim.SGD(..., weight_decay=1e-6)``, which in ngf is the run's ``--weight-decay 1e-6``
  (coupled, the default mode). The run's ``--weight-decay`` does not touch B (``params_decay`` is
  false): B's decay is ``decay`` alone, whatever the run's;
- B's initial values: ``torch.nn.init.kaiming_uniform_`` on [classes, size], std √(2/size); ngf draws
  from ``dist = "uniform"`` with ``scale = 1`` Glorot units, std √(2/(size + classes)), within
  a factor √(1 + classes/size) of the authors' (1.005 for a 2000-unit node and 10 classes).

Where ngf differs, and why:

- the optimiser: the authors train W with SGD (momentum 0.9, Nesterov) and B with Adam, whose lr
  decays by 0.8 each epoch (``StepLR(backward_optimizer, gamma=0.8)``); in ngf one run optimiser and
  schedule train both (B with its own optimiser state at ``params_lr`` × the run's lr), so a run
  chooses one optimiser for both and B's lr follows the run's schedule, not its own step decay;
- B is sized where z^l is *read* (p(z^l), after a pooling its consumer applies, as dfa's D), not at
  z^l itself: in the authors' network the second convolution's B spans the 28 × 28 map before the
  max-pool; in ngf it spans the pooled map and pᵀ routes B e to the max positions. This is the
  shared mechanism that makes the same rule run on mlp, cnn and resnet without per-layer cases;
- no batch normalisation (the authors' conv net has it; ngf's cnn does not).

Locality: δ^l and ∇B_l read e, the trace at node l (h^l, z^l) and B_l, which belongs to the rule
and to node l alone; no forward weight of any node is read, so dkp passes the locality contract
(docs/rules.md#locality). The forward updates are ``updates_from_deltas`` of the δ^l.
"""


from ngf.core.checks import number
from ngf.core.feedback import check_distribution
from ngf.core.network import updates_from_deltas
from ngf.core.rule import LearningRule, Updates, stateless_init
from ngf.host.hookspecs import hookimpl
from ngf.plugins.dfa import direct_feedback, direct_signals


def feedback_gradients(net, trace, feedback: tuple, e, decay: float) -> tuple:
    """∇B_l = mean_n p(z^l_n) ⊗ e_n + λ_B B_l for every hidden node: the gradient a direct forward
    connection p(z^l) → h^L would get (its own node's output and the output error only)."""
    batch = e.shape[0]
    return tuple(net.read_output(l, trace[l].out).reshape(batch, -1).T @ e / batch + decay * b
                 for l, b in enumerate(feedback))


def dkp(scale: float = 1.0, dist: str = "uniform", params_lr: float = 0.2, decay: float = 1e-6) -> LearningRule:
    """Direct Kolen–Pollack: dfa's direct signals through feedback B_l learned as forward connections.

    B is the rule's trainable parameters, trained by the run's optimiser and schedule; the run's
    --weight-decay applies to the forward weights only (the authors' 1e-6 is ``--weight-decay 1e-6``).

    Args:
      scale: B's initial scale, in units of Glorot's standard deviation for a size(p(z^l)) × n_classes matrix.
      dist: B's initial distribution, ``normal`` or ``uniform`` (same standard deviation; the authors' Kaiming uniform).
      params_lr: B's learning rate, as a multiple of the run's --lr (the authors' 1e-4 / 5e-4; 0 keeps B fixed: dfa).
      decay: λ_B, B's coupled weight decay, added to its gradient (the authors' Adam weight_decay=1e-6).
    """
    check_distribution(dist, "dkp option dist")
    scale = number("dkp", "scale", scale, minimum=0, exclusive=True)
    params_lr = number("dkp", "params_lr", params_lr, minimum=0)
    decay = number("dkp", "decay", decay, minimum=0)

    def init_params(key, net, params):
        return direct_feedback(key, net, params, scale, dist)  # one B_l per hidden node

    def compute_targets(net, params, trace, labels, state, rule_params):
        e = net.loss.error(trace[-1].pre, labels)  # δ^L = e
        return direct_signals(net, trace, rule_params, e) + (e,), state

    def local_update(net, params, trace, deltas, state, rule_params):
        grads = feedback_gradients(net, trace, rule_params, deltas[-1], decay)
        return Updates(updates_from_deltas(net, params, trace, deltas), grads), state

    return LearningRule(stateless_init, compute_targets, local_update, init_params=init_params,
                        params_lr=params_lr, params_decay=False)


@hookimpl
def ngf_register_rules():
    """Register ``dkp``."""
    return {"dkp": dkp}
