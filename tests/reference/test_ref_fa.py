"""fa against BioTorch's feedback-alignment layer, one step in float64 (docs/rules.md#authors-code).

Authors' code: BioTorch (github.com/jsalbert/biotorch), ``biotorch/autograd/fa/linear.py``
lines 10-32 and ``biotorch/layers/fa_constructor/linear.py`` lines 58-67 and 107-111, ported
in ``port_biotorch.py``. ngf's B_l is the port's ``weight_backward`` transposed ([in, out]
against torch's [out, in]). Factor 1: ngf's update is BioTorch's ``.grad`` (both the
gradient of the batch-mean cross-entropy with B in place of W on the way down), weights
transposed, biases as they are. ``dist="uniform"`` is BioTorch's Xavier-uniform B.
"""

import numpy as np

from ngf.plugins.fa import fa
from ngf_tiny_mlp import kernel, run_rule
from port_biotorch import fa_grads, tanh_grad
from ref_dense import dense_net, flat, from_torch, sample, torch_weights
from reference_kit import assert_flip_detected, assert_same_step, float64

FACTOR = 1.0  # ngf's update = BioTorch's weight.grad (transposed) and bias.grad


def test_fa_step_equals_biotorch():
    with float64():
        net, params = dense_net("tanh", "ce")
        x, y = sample()
        _, updates, state = run_rule(fa(dist="uniform"), net, params, x, y)
        backward = [None] + [kernel(b).T for b in state.feedback[1:]]  # weight_backward, [out, in]
        port = from_torch(fa_grads(torch_weights(params), backward, np.asarray(x), np.asarray(y), np.tanh, tanh_grad))
        ngf = flat(updates)
    assert_same_step(ngf, port, FACTOR)
    assert_flip_detected(ngf, port, FACTOR, leaf=0)  # the first layer's weights, two feedback steps down
