"""kp against Akrout et al.'s Kolen–Pollack code, one SGD step in float64 (docs/rules.md#authors-code).

Authors' code: github.com/makrout/Deep-Learning-without-Weight-Transport, commit
688f47addd2131684da1b7829b20365f585eee66: ``fcnn/FCNN_FA.py`` lines 108-137 (``backpropagate``: sigmoid
layers, ``delta_cost = activations[-1] - y`` of the sigmoid cross-entropy, ``delta =
backward_weights[-l+1] @ delta * sigmoid'``, ``del_w = delta @ activation.T`` summed over the batch,
``del_b = mean(delta)``), ``fcnn/FCNN_BP.py`` lines 75-93 (``feedforward``, examples as columns) and
``fcnn/FCNN_KP.py`` lines 57-73 (``W ← weight_decay·W − (lr/N)·del_w``, ``B ← weight_decay·B −
(lr/N)·del_wᵀ``, ``b ← b − (lr/N)·del_b``). Ported below. The authors' ``backward_weights`` are
[in, out], ngf's B_l kernels as they are.

ngf's net: sigmoid hidden layers, a linear output under ``--loss bce`` (e = σ(h^L) − onehot(y), the
authors' ``delta_cost``); the rule's ``apply_changes`` gets the change plain SGD makes, C = −lr·update.
Factors: weights 1 (ngf's update is the authors' step per unit lr, del_w/N, transposed; W's and B's
changes are equal); biases N (the authors divide ``del_b``, already a batch mean, by N again).
Compared with decay 0: the authors' ``main.py`` calls ``train`` with its default ``weight_decay=1``,
no decay. ngf's B carries a bias leaf the authors' B lacks (it feeds nothing back); not compared.
"""

import jax
import numpy as np

from ngf.plugins.kp import kp
from ngf_tiny_mlp import bias, kernel, run_rule
from ref_dense import BATCH, dense_net, flat, sample, torch_weights
from reference_kit import assert_flip_detected, assert_same_step, float64

LR = 0.3  # the authors' MNIST learning rate (experiments/mnist/kp-V0/experiment_config.txt)
WEIGHT_FACTOR, BIAS_FACTOR = 1.0, float(BATCH)


def kp_step(weights, biases, backward, x, y, lr, weight_decay=1.0):
    """One batch of ``FCNN_KP.train``: (del_w / N, del_b / N, B's change), per layer, authors' layout."""
    sigmoid = lambda h: 1.0 / (1.0 + np.exp(-h))  # noqa: E731 (FCNN_BP.sigmoid)
    outs, activations = [], [x]  # feedforward, FCNN_BP.py:84-93
    for b, w in zip(biases, weights):
        outs.append(w @ activations[-1] + b)
        activations.append(sigmoid(outs[-1]))
    delta = activations[-1] - y  # FCNN_FA.py:117
    del_b, del_w = [None] * len(weights), [None] * len(weights)
    del_b[-1], del_w[-1] = np.mean(delta, axis=1, keepdims=True), delta @ activations[-2].T  # :120-121
    for l in range(2, len(weights) + 1):  # :126-137
        delta = (backward[-l + 1] @ delta) * sigmoid(outs[-l]) * (1 - sigmoid(outs[-l]))
        del_b[-l], del_w[-l] = np.mean(delta, axis=1, keepdims=True), delta @ activations[-l - 1].T
    n = x.shape[1]
    new_backward = [weight_decay * bw - (lr / n) * dw.T for bw, dw in zip(backward, del_w)]  # FCNN_KP.py:72-73
    return [dw / n for dw in del_w], [db / n for db in del_b], [nb - bw for nb, bw in zip(new_backward, backward)]


def test_kp_step_equals_authors():
    with float64():
        net, params = dense_net("sigmoid", "bce")
        x, y = sample()
        rule = kp(decay=0.0)
        _, updates, state = run_rule(rule, net, params, x, y)
        changes = jax.tree.map(lambda u: -LR * u, updates)  # plain SGD's change
        new_params, new_state = rule.apply_changes(net, params, changes, state)
        ngf_b_change = [kernel(nb) - kernel(b) for nb, b in zip(new_state.feedback[1:], state.feedback[1:])]
        ngf_w_change = [kernel(nw) - kernel(w) for nw, w in zip(new_params, params)]
        weights = [w for w, _ in torch_weights(params)]
        backward = [np.zeros_like(weights[0].T)] + [kernel(b) for b in state.feedback[1:]]  # the first B is never read
        onehot = np.eye(weights[-1].shape[0])[np.asarray(y)].T
        step_w, step_b, b_change = kp_step(weights, [bias(t)[:, None] for t in params], backward,
                                           np.asarray(x).T, onehot, LR)
        ngf = flat(updates)
    assert_same_step(ngf[::2], [s.T for s in step_w], WEIGHT_FACTOR)
    assert_same_step(ngf[1::2], [s[:, 0] for s in step_b], BIAS_FACTOR)
    assert_same_step(ngf_w_change, [-LR * s.T for s in step_w], WEIGHT_FACTOR)
    assert_same_step(ngf_b_change, b_change[1:], WEIGHT_FACTOR)  # B's change: the nodes that send δ down
    assert_flip_detected(ngf[::2], [s.T for s in step_w], WEIGHT_FACTOR, leaf=0)
    assert_flip_detected(ngf_b_change, b_change[1:], WEIGHT_FACTOR, leaf=0)
