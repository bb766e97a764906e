"""brsf against BioTorch's batchwise random-magnitude sign-concordant feedback, float64 (docs/rules.md#authors-code).

Authors' code: BioTorch (github.com/jsalbert/biotorch), ``biotorch/layers/brsf/linear.py`` lines 7-24
and ``biotorch/layers/fa_constructor/linear.py`` lines 96-103 (a fresh Xavier-uniform ``wb`` at every
forward pass, ``weight_backward = |wb| * sign(weight)``), through ``biotorch/autograd/fa/linear.py``
lines 18-32; ported in ``port_biotorch.py``. The port gets the R_l ngf draws for this step (from the
key in ngf's state, as the rule does) and forms |R| ⊙ sign(W) itself. Factor 1: ngf's update is
BioTorch's ``.grad`` (weights transposed); ``dist="uniform"`` is BioTorch's Xavier-uniform ``wb``.
"""

import jax
import numpy as np
from ngf_signsym.rules import brsf, random_magnitudes

from ngf_tiny_mlp import kernel, run_rule
from port_biotorch import fa_grads, random_sign_backward, tanh_grad
from ref_dense import dense_net, flat, from_torch, sample, torch_weights
from reference_kit import assert_flip_detected, assert_same_step, float64

FACTOR = 1.0  # ngf's update = BioTorch's weight.grad (transposed) and bias.grad


def test_brsf_step_equals_biotorch():
    with float64():
        net, params = dense_net("tanh", "ce")
        x, y = sample()
        rule = brsf(dist="uniform")
        _, updates, _ = run_rule(rule, net, params, x, y, key=3)
        draw = jax.random.split(rule.init(jax.random.key(3), net, params).key)[1]  # this step's draw
        drawn = random_magnitudes(draw, params, 1.0, "uniform")
        weights = torch_weights(params)
        backward = [None] + [random_sign_backward(w, kernel(r).T) for (w, _), r in zip(weights[1:], drawn)]
        port = from_torch(fa_grads(weights, backward, np.asarray(x), np.asarray(y), np.tanh, tanh_grad))
        ngf = flat(updates)
    assert_same_step(ngf, port, FACTOR)
    assert_flip_detected(ngf, port, FACTOR, leaf=0)
