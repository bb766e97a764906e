"""usf against BioTorch's uniform sign-concordant feedback, one step in float64 (docs/rules.md#authors-code).

Authors' code: BioTorch (github.com/jsalbert/biotorch), ``biotorch/layers/usf/linear.py`` lines 7-21
and ``biotorch/layers/fa_constructor/linear.py`` lines 58-67 and 88-95 (``weight_backward =
scaling_factor * sign(weight)``, ``scaling_factor = sqrt(2 / (fan_in + fan_out))``, Xavier init),
through ``biotorch/autograd/fa/linear.py`` lines 18-32; ported in ``port_biotorch.py``. The port
builds its feedback from the forward weights itself. Factor 1: ngf's update is BioTorch's ``.grad``
(weights transposed); ngf's ``usf(scale=1)`` magnitude σ_l is BioTorch's Xavier ``scaling_factor``.
"""

import numpy as np
from ngf_signsym.rules import usf

from ngf_tiny_mlp import run_rule
from port_biotorch import fa_grads, tanh_grad, usf_backward
from ref_dense import dense_net, flat, from_torch, sample, torch_weights
from reference_kit import assert_flip_detected, assert_same_step, float64

FACTOR = 1.0  # ngf's update = BioTorch's weight.grad (transposed) and bias.grad


def test_usf_step_equals_biotorch():
    with float64():
        net, params = dense_net("tanh", "ce")
        x, y = sample()
        _, updates, _ = run_rule(usf(), net, params, x, y)
        weights = torch_weights(params)
        backward = [usf_backward(w) for w, _ in weights]  # scaling_factor * sign(weight), per layer
        port = from_torch(fa_grads(weights, backward, np.asarray(x), np.asarray(y), np.tanh, tanh_grad))
        ngf = flat(updates)
    assert_same_step(ngf, port, FACTOR)
    assert_flip_detected(ngf, port, FACTOR, leaf=2)  # the second layer's weights
