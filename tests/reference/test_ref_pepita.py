"""pepita (dense) against Dellaferrera & Kreiman's PEPITA code, one step in float64 (docs/rules.md#authors-code).

Authors' code: github.com/GiorgiaD/PEPITA, commit 3fe03d80b642fa6df8ed23fc1c6dc9247f98c63b,
``main_pytorch.py`` lines 411-467 (pass 1, ``error = outputs - target_onehot`` with softmax outputs,
``mod_inputs = inputs + error @ B.T``, pass 2, and ``delta_w`` of the first layer (463), the
intermediate ones (467) and the last (449)) and 493-503 (``w += eta * delta_w / batch_size``); the
network is ``NetFC1x1024DOcust`` of ``Tutorial_PEPITA_FullyConnectedNets_CIFAR-10.ipynb`` (cell 4:
``nn.Linear(..., bias=False)``, relu, softmax output) deepened to 20-16-12-5, run without dropout.
Ported below. ngf's F [size(x), classes] is the authors' ``B`` as it is.

Factor −1/N on every weight (ngf = −(1/N) × the authors' ``delta_w``, transposed): the authors add
η·delta_w/N to W, ngf hands the optimiser a gradient it subtracts. Difference beyond the factor:
the authors' output layer learns from the pass-2 error softmax(h'^L) − onehot(y), ngf's from pass
1's e (both at the pass-2 input); the test compares ngf's output layer with the port run on pass 1's
error, and shows the authors' own differs. Biases: the authors' layers have none; ngf's are set to
0 (the same forward passes) and their updates are not compared.
"""

import numpy as np
import pytest

from ngf.plugins.pepita import pepita
from ngf_tiny_mlp import run_rule
from ref_dense import BATCH, dense_net, flat, sample, torch_weights
from reference_kit import assert_flip_detected, assert_same_step, float64

FACTOR = -1.0 / BATCH  # ngf's update = −(1/N) × the authors' delta_w


def pepita_delta_w(weights, projection, x, labels, output_error="pass2"):
    """The authors' ``delta_w_all`` ([out, in] per layer) for one batch; ``output_error="pass1"``
    puts pass 1's error in the last layer's update instead of pass 2's (ngf's choice)."""
    def forward(inputs):  # relu hidden layers, softmax output; layers_act = F.relu(fc output)
        acts, z = [], inputs
        for l, w in enumerate(weights):
            h = z @ w.T
            z = np.maximum(h, 0.0) if l < len(weights) - 1 else h
            acts.append(z)
        p = np.exp(acts[-1] - acts[-1].max(1, keepdims=True))
        return acts, p / p.sum(1, keepdims=True)

    onehot = np.eye(projection.shape[1])[labels]
    acts, outputs = forward(x)
    error = outputs - onehot  # main_pytorch.py:418
    mod_inputs = x + error @ projection.T  # :421-423
    mod_acts, mod_outputs = forward(mod_inputs)
    mod_error = mod_outputs - onehot  # :431
    last = len(weights) - 1
    delta_w = [-(acts[0] - mod_acts[0]).T @ mod_inputs]  # :463, the first layer
    delta_w += [-(acts[l] - mod_acts[l]).T @ mod_acts[l - 1] for l in range(1, last)]  # :467
    delta_w.append(-(mod_error if output_error == "pass2" else error).T @ mod_acts[last - 1])  # :449
    return delta_w


def test_pepita_step_equals_authors():
    with float64():
        net, params = dense_net("relu", "ce", biases=False)
        x, y = sample()
        _, updates, state = run_rule(pepita(), net, params, x, y)
        weights = [w for w, _ in torch_weights(params)]
        args = (weights, np.asarray(state.projection), np.asarray(x), np.asarray(y))
        port = [d.T for d in pepita_delta_w(*args, output_error="pass1")]
        authors = [d.T for d in pepita_delta_w(*args)]
        ngf = flat(updates)[::2]  # the kernels
    assert_same_step(ngf, port, FACTOR)
    assert_same_step(ngf[:2], authors[:2], FACTOR)  # the hidden layers do not depend on the output's error
    with pytest.raises(AssertionError):  # the authors' pass-2 output error gives another update (5e-4 relative here)
        assert_same_step(ngf[2:], authors[2:], FACTOR)
    assert_flip_detected(ngf, port, FACTOR, leaf=1)
