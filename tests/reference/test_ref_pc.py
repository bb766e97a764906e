"""pc against the Bogacz group's predictive-coding library (port_pc.py, which cites its files and lines).

One step on the 20-16-12-5 tanh mlp, batch 8, float64, symmetric feedback (their autograd), with a
PCLayer after each hidden activation (ngf's form, x̂^l ≈ f(W x̂^{l-1} + b)), T = 5, γ = 0.2 and β = 0.5
so that the relaxation moves the activities well away from the forward pass. Their trainer takes its
parameter gradients before its last iteration's x step: their T is ngf's steps + 1. Their gradients
are of F summed over the batch with the loss β · Σ CE; ngf's are ∂F/∂θ / β averaged over the batch:
factor 1 / (β · batch). Both are gradients the optimiser descends (sign +1).
"""

import numpy as np

from ngf.plugins.pc import pc
from port_pc import pc_step
from ref_mlp64 import BATCH, flat, rule_step, sample, tanh_mlp, weights
from reference_kit import assert_flip_detected, assert_same_step, float64

STEPS, RATE, BETA = 5, 0.2, 0.5
FACTOR = 1 / (BETA * BATCH)


def compare():
    """ngf's updates, the port's gradients with T = steps + 1, and the port's with T = steps."""
    with float64():
        net, params = tanh_mlp((16, 12))
        x, y = sample()
        updates, _, _ = rule_step(pc(steps=STEPS, rate=RATE, beta=BETA), net, params, x, y)
    W, b = weights(params)
    ports = [pc_step(W, b, np.asarray(x), np.asarray(y), T, RATE, BETA) for T in (STEPS + 1, STEPS)]
    return flat(updates.params), *[[a for pair in zip(*port) for a in pair] for port in ports]


def test_pc_step_equals_the_bogacz_group_library_with_their_t_one_more():
    ngf, port, one_step_short = compare()
    assert_same_step(ngf, port, factor=FACTOR)
    assert_flip_detected(ngf, port, factor=FACTOR, leaf=0)
    assert_flip_detected(ngf, port, factor=FACTOR, leaf=5)
    try:  # the relaxation's length matters: ngf's T steps are not their T iterations
        assert_same_step(ngf, one_step_short, factor=FACTOR)
    except AssertionError:
        return
    raise AssertionError("ngf's pc also equals the library's step with T = steps")
