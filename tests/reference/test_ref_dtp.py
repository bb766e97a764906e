"""dtp against Lee et al.'s own code (github.com/donghyunlee/dtp, ``conti_dtp.py`` lines 38-100; port_dtp.py).

One step on a 20-16-12-10-5 tanh mlp (two learned inverses, so one target is carried down
through two of them), batch 8, float64, their η̂ and σ (``conti_dtp.py`` line 145). ngf's
η̂ is per example, theirs steps down the batch mean: η̂ = lr0 / 8. Their local losses are
mse = ‖·‖² without ½: ngf's hidden-layer and inverse gradients are ½ of theirs; the output
layer's (the task loss's) are equal. Both are gradients the optimiser descends (sign +1).
"""

import jax
import numpy as np

from ngf.plugins.dtp import dtp
from ngf_tiny_mlp import kernel
from port_dtp import dtp_step
from ref_mlp64 import BATCH, flat, init_owned, rule_step, sample, tanh_mlp, weights
from reference_kit import assert_flip_detected, assert_same_step, float64

LR0, SIGMA = 0.327736332653, 0.359829566008  # conti_dtp.py line 145: exp(__lr0, …, __c)
HALF = 0.5  # ngf's ½‖·‖² against their ‖·‖² (util.py line 41)
INVERTED = (1, 2)  # the nodes with an inverse: above the first, below the output


def dtp_noise(step_key, net):
    """The noise ``inverse_gradients`` draws: ε_l = σ N(0, 1) from split(step key, depth)[l], shaped like u^l."""
    def draw(trace, _):
        keys = jax.random.split(step_key, net.depth)
        return {l: SIGMA * jax.random.normal(keys[l], trace[l].inputs.shape, trace[l].inputs.dtype) for l in INVERTED}
    return draw


def compare():
    """ngf's and the port's (hidden-layer, output-layer, inverse) updates as pairs of lists, and ω's bias leaf."""
    with float64():
        net, params = tanh_mlp((16, 12, 10))
        x, y = sample()
        rule = dtp(eta_hat=LR0 / BATCH, noise=SIGMA)
        owned = init_owned(rule, net, params)  # ω_l and c_l (not 0, so that the port sees it used)
        step_key = jax.random.key(4)
        updates, _, noise = rule_step(rule, net, params, x, y, owned, step_key, dtp_noise(step_key, net))
    W, B = weights(params)
    V = {l: kernel(owned[l].omega).T for l in INVERTED}  # G_l(h) = tanh(h V_l + C_l): V_l = ω_lᵀ
    C = {l: np.asarray(owned[l].bias) for l in INVERTED}
    noise = {l: np.asarray(noise[l]) for l in INVERTED}
    gW, gB, gV, gC = dtp_step(W, B, V, C, np.asarray(x), np.asarray(y), LR0, noise)
    ngf, port = flat(updates.params), [a for pair in zip(gW, gB) for a in pair]
    inverses = ([a for l in INVERTED for a in (kernel(updates.rule_params[l].omega),
                                               np.asarray(updates.rule_params[l].bias))],
                [a for l in INVERTED for a in (gV[l].T, gC[l])])
    omega_bias = [np.asarray(updates.rule_params[l].omega["linear"]["bias"]) for l in INVERTED]
    return (ngf[:-2], port[:-2]), (ngf[-2:], port[-2:]), inverses, omega_bias


def test_dtp_step_equals_lee_et_al_up_to_the_half_of_their_mse():
    hidden, output, inverses, omega_bias = compare()
    assert_same_step(*hidden, factor=HALF)      # W_l, b_l of the three hidden layers: ½ × theirs
    assert_same_step(*output, factor=1.0)       # the output layer's task-loss gradient: theirs
    assert_same_step(*inverses, factor=HALF)    # ω_l = V_lᵀ and c_l of the two inverses: ½ × theirs
    assert not any(np.any(b) for b in omega_bias)  # ω's bias leaf is unused by J^T (their G has none)
    assert_flip_detected(*hidden, factor=HALF, leaf=0)
    assert_flip_detected(*output, factor=1.0, leaf=1)
    assert_flip_detected(*inverses, factor=HALF, leaf=0)
