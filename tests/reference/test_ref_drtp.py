"""drtp (dense) against Frenkel et al.'s DRTP code, one step in float64 (docs/rules.md#authors-code).

Authors' code: github.com/ChFrenkel/DirectRandomTargetProjection, commit b84e3fe965bf98b8531f3036604cbe16424a5cc6:
``function.py`` lines 47-66 (``HookFunction.backward``: in DRTP mode the gradient arriving at a hidden
layer's output is replaced by ``labels.mm(fixed_fb_weights)``, whatever came from above),
``models.py`` lines 85-106 and 127-148 (``FC_block``: fc → activation → hook; the output layer is
trained by BP, its hook has no feedback), ``module.py`` lines 83-101 (B of shape [label_features,
output_dim]) and ``train.py`` lines 69-77 and 98-108 (``binary_cross_entropy`` on sigmoid outputs by
default, mean over batch and classes; ``cross_entropy`` with ``--output-act none``). Ported below.

ngf's D_l [size(z^l), classes] is the authors' B_l transposed. Factors (ngf = factor × authors'
``.grad``, weights transposed): hidden layers −1/N (ngf's target is −onehot(y) where the authors
inject +onehot(y) as a gradient, and ngf averages over the batch where the authors sum); output
layer, BP in both: K (the number of classes) under BCE, whose torch mean also divides by K, and 1
under CE.
"""

import numpy as np
import pytest

from ngf.plugins.drtp import drtp
from ngf_tiny_mlp import run_rule
from ref_dense import BATCH, N_CLASSES, dense_net, flat, from_torch, sample, torch_weights
from reference_kit import assert_flip_detected, assert_same_step, float64

HIDDEN_FACTOR = -1.0 / BATCH  # ngf's hidden update = −(1/N) × the authors' grad
OUTPUT_FACTOR = {"bce": float(N_CLASSES), "ce": 1.0}  # BCE's torch mean divides by N·K, ngf's by N


def drtp_grads(weights, feedback, x, labels, loss):
    """One ``loss_val.backward()`` of the authors' DRTP mlp (tanh hidden): each layer's (weight.grad, bias.grad).

    ``feedback[l]``: hidden layer l's ``fixed_fb_weights`` [classes, out_l] (module.py:91).
    """
    zs, hs = [x], []
    for l, (w, b) in enumerate(weights):  # FC_block.forward, models.py:142-148
        hs.append(zs[-1] @ w.T + b)
        zs.append(np.tanh(hs[-1]) if l < len(weights) - 1 else hs[-1])
    n, k = hs[-1].shape
    onehot = np.eye(k)[labels]  # train.py:103
    if loss == "bce":  # sigmoid output, F.binary_cross_entropy (mean over N·K): ∂/∂h = (σ(h) − t)/(N K)
        g = (1.0 / (1.0 + np.exp(-hs[-1])) - onehot) / (n * k)
    else:  # --output-act none, F.cross_entropy (mean over N): ∂/∂h = (softmax(h) − t)/N
        p = np.exp(hs[-1] - hs[-1].max(1, keepdims=True))
        g = (p / p.sum(1, keepdims=True) - onehot) / n
    grads = [(g.T @ zs[-2], g.sum(0))]  # the output layer, by BP
    for l in range(len(weights) - 2, -1, -1):
        arriving = onehot @ feedback[l]  # function.py:62, labels.mm(fixed_fb_weights)
        delta = arriving * (1.0 - np.tanh(hs[l]) ** 2)  # the tanh's backward, below the hook
        grads.insert(0, (delta.T @ zs[l], delta.sum(0)))
    return grads


@pytest.mark.parametrize("loss", ["bce", "ce"])
def test_drtp_step_equals_authors(loss):
    with float64():
        net, params = dense_net("tanh", loss)
        x, y = sample()
        _, updates, state = run_rule(drtp(), net, params, x, y)
        feedback = [np.asarray(d).T for d in state.feedback]  # fixed_fb_weights = D_lᵀ
        port = from_torch(drtp_grads(torch_weights(params), feedback, np.asarray(x), np.asarray(y), loss))
        ngf = flat(updates)
    assert_same_step(ngf[:4], port[:4], HIDDEN_FACTOR)  # the two hidden layers' weights and biases
    assert_same_step(ngf[4:], port[4:], OUTPUT_FACTOR[loss])  # the output layer's
    assert_flip_detected(ngf[:4], port[:4], HIDDEN_FACTOR, leaf=0)
    assert_flip_detected(ngf[4:], port[4:], OUTPUT_FACTOR[loss], leaf=0)
