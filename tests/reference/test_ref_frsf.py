"""frsf against BioTorch's fixed random-magnitude sign-concordant feedback, float64 (docs/rules.md#authors-code).

Authors' code: BioTorch (github.com/jsalbert/biotorch), ``biotorch/layers/frsf/linear.py`` lines 7-22
and ``biotorch/layers/fa_constructor/linear.py`` lines 40-41 (``weight_backward = |weight_backward|``,
drawn once, Xavier-uniform, 62-63) and 104-106 (``|weight_backward| * sign(weight)`` at every forward
pass), through ``biotorch/autograd/fa/linear.py`` lines 18-32; ported in ``port_biotorch.py``. The port
gets ngf's fixed R_l (transposed to torch's [out, in]) and forms |R| ⊙ sign(W) itself. Factor 1:
ngf's update is BioTorch's ``.grad`` (weights transposed); ``dist="uniform"`` is BioTorch's Xavier-uniform R.
"""

import numpy as np
from ngf_signsym.rules import frsf

from ngf_tiny_mlp import kernel, run_rule
from port_biotorch import fa_grads, random_sign_backward, tanh_grad
from ref_dense import dense_net, flat, from_torch, sample, torch_weights
from reference_kit import assert_flip_detected, assert_same_step, float64

FACTOR = 1.0  # ngf's update = BioTorch's weight.grad (transposed) and bias.grad


def test_frsf_step_equals_biotorch():
    with float64():
        net, params = dense_net("tanh", "ce")
        x, y = sample()
        _, updates, state = run_rule(frsf(dist="uniform"), net, params, x, y)
        weights = torch_weights(params)
        magnitudes = [None] + [kernel(m).T for m in state.magnitudes]  # the fixed |R_l|, [out, in]
        backward = [None] + [random_sign_backward(w, m) for (w, _), m in zip(weights[1:], magnitudes[1:])]
        port = from_torch(fa_grads(weights, backward, np.asarray(x), np.asarray(y), np.tanh, tanh_grad))
        ngf = flat(updates)
    assert_same_step(ngf, port, FACTOR)
    assert_flip_detected(ngf, port, FACTOR, leaf=0)
