"""dfa against BioTorch's direct-feedback-alignment layer, one step in float64 (docs/rules.md#authors-code).

Authors' code: BioTorch (github.com/jsalbert/biotorch), ``biotorch/layers/dfa/linear.py`` lines 26 and
76-87 (each layer's backward hook sends ``loss_gradient.mm(weight_backward)`` to its input),
``biotorch/autograd/dfa/linear.py`` lines 15-30 and ``biotorch/module/biomodule.py`` lines 32-36
(``loss_gradient`` of the batch-mean cross-entropy); ported in ``port_biotorch.py``. BioTorch's
feedback sits on the layer that reads z^l: layer l+1's ``weight_backward`` [classes, size(z^l)] is
ngf's D_l [size(z^l), classes] transposed. Factor 1: ngf's update is BioTorch's ``.grad`` (weights
transposed); ``dist="uniform"`` is BioTorch's Xavier-uniform ``weight_backward``.
"""

import numpy as np

from ngf.plugins.dfa import dfa
from ngf_tiny_mlp import run_rule
from port_biotorch import dfa_grads, tanh_grad
from ref_dense import dense_net, flat, from_torch, sample, torch_weights
from reference_kit import assert_flip_detected, assert_same_step, float64

FACTOR = 1.0  # ngf's update = BioTorch's weight.grad (transposed) and bias.grad


def test_dfa_step_equals_biotorch():
    with float64():
        net, params = dense_net("tanh", "ce")
        x, y = sample()
        _, updates, state = run_rule(dfa(dist="uniform"), net, params, x, y)
        backward = [None] + [np.asarray(d).T for d in state.feedback]  # layer l+1's weight_backward = D_lᵀ
        port = from_torch(dfa_grads(torch_weights(params), backward, np.asarray(x), np.asarray(y), np.tanh, tanh_grad))
        ngf = flat(updates)
    assert_same_step(ngf, port, FACTOR)
    assert_flip_detected(ngf, port, FACTOR, leaf=0)
