"""ddtp against the authors' DDTP-linear (Meulemans et al. 2020; port_ddtp.py, which cites their files and lines).

One step on the 20-16-12-5 tanh mlp, batch 8, float64, with their MNIST DDTP-linear target step
and σ (``final_configs/mnist_DDTPlinear.py``), ngf's β = 1 and Q decay λ = 0.01. Their output
target steps down the batch-mean loss and their layer losses are ‖·‖² (teaching signal 2 (h − target)):
ngf's forward updates are batch / (2 · target_stepsize) × theirs. Their Q loss is (1/σ²) times a
mean over batch and units: ngf's Q gradient is σ² · size_l × theirs, and their Q weight decay wd
is ngf's λ as wd = 2λ / (σ² · size_l). Both are gradients the optimiser descends (sign +1).
"""

import jax
import numpy as np

from ngf.plugins.ddtp import ddtp, draw_noise
from port_ddtp import ddtp_step
from ref_mlp64 import BATCH, flat, init_owned, rule_step, sample, tanh_mlp, weights
from reference_kit import assert_flip_detected, assert_same_step, float64

TARGET_STEPSIZE, SIGMA = 0.06096940412767466, 0.0907524824699504  # mnist_DDTPlinear.py lines 3, 10
DECAY = 0.01  # ngf's λ
FORWARD = BATCH / (2 * TARGET_STEPSIZE)  # ngf's forward updates against theirs


def compare():
    """ngf's and the port's forward updates, and each hidden layer's Q gradient, as pairs; the sizes."""
    with float64():
        net, params = tanh_mlp((16, 12))
        x, y = sample()
        rule = ddtp(beta=1.0, noise=SIGMA, q_decay=DECAY)
        owned = init_owned(rule, net, params)  # Q_l [size(z^l), classes] for the hidden nodes, None on top
        step_key = jax.random.key(4)
        updates, _, noise = rule_step(rule, net, params, x, y, owned, step_key,
                                      lambda trace, _: draw_noise(step_key, trace, owned, SIGMA))
    kernels, biases = weights(params)
    sizes = [q.shape[0] for q in owned[:-1]]
    gW, gb, gQ = ddtp_step([k.T for k in kernels], biases, [np.asarray(q) for q in owned[:-1]],
                           np.asarray(x), np.asarray(y), TARGET_STEPSIZE, SIGMA,
                           [np.asarray(e) for e in noise[:-1]],
                           [2 * DECAY / (SIGMA ** 2 * size) for size in sizes])  # wd = 2λ / (σ² size_l)
    forward = (flat(updates.params), [a for w, c in zip(gW, gb) for a in (w.T, c)])
    qs = [([np.asarray(updates.rule_params[l])], [gQ[l]]) for l in range(len(sizes))]
    assert updates.rule_params[-1] is None  # the output node has no Q
    return forward, qs, sizes


def test_ddtp_step_equals_the_authors_ddtp_linear_up_to_their_scalings():
    forward, qs, sizes = compare()
    assert_same_step(*forward, factor=FORWARD)  # every W_l, b_l: batch / (2 · target_stepsize) × theirs
    for (ngf_q, port_q), size in zip(qs, sizes):
        assert_same_step(ngf_q, port_q, factor=SIGMA ** 2 * size)  # Q_l: σ² · size_l × theirs
    assert_flip_detected(*forward, factor=FORWARD, leaf=0)
    assert_flip_detected(*qs[0], factor=SIGMA ** 2 * sizes[0], leaf=0)
