"""lra against the authors' LRA-E (github.com/AnkurMali/LRA-E, ``mnist/mnist_torch.py``; port_lra.py).

One step on the 20-16-12-5 tanh mlp without biases (their layers have none, so ngf's bias
updates have nothing to be compared with), batch 8, float64, their β = 0.1 and γ = 1. Both
average over the batch and hand the optimiser a gradient it descends: factor 1. Their errors
e_l = z_l − y_l carry no f'(h_l) (and e_l, not f' ⊙ e_l, goes down through E); ngf's δ_l do.
So the output layer's update equals theirs, the hidden layers' differ, and the port with that
one change (``derivative=True``) equals ngf everywhere: the f' is the whole difference.
LRA-E: their E gets the same gradient as its layer's W from the same optimiser (E moves as W
does); ngf's ``apply_changes`` adds γ = 1 times W's applied change to E.
"""

import jax
import numpy as np

from ngf.plugins.lra import lra
from ngf_tiny_mlp import kernel
from port_lra import lra_step
from ref_mlp64 import N_CLASSES, rule_step, sample, tanh_mlp
from reference_kit import assert_flip_detected, assert_same_step, float64

BETA, GAMMA, LR = 0.1, 1.0, 0.01  # mnist_torch.py line 99: beta=0.1, gamma=1.0; LR: an SGD step for E's check


def compare():
    """ngf's kernel updates and E changes; the authors' and the f'-port's dW (ngf's layout) and E changes."""
    with float64():
        net, params = tanh_mlp((16, 12), biases=False)
        x, y = sample()
        rule = lra(beta=BETA, gamma=GAMMA, learn_e=True)
        updates, state, _ = rule_step(rule, net, params, x, y)
        # an SGD step's applied change C = −η ΔW, then LRA-E's E ← E + γ C
        _, after = jax.jit(lambda p, u, s: rule.apply_changes(net, p, jax.tree.map(lambda a: -LR * a, u), s)
                           )(params, updates, state)
    hidden = range(1, net.depth)
    E = {i: kernel(state.feedback[i]) for i in hidden}
    moved = [kernel(after.feedback[i]) - E[i] for i in hidden]  # E' − E
    ports = []
    for derivative in (False, True):
        dW, dE = lra_step([kernel(t).T for t in params], E, np.asarray(x), np.eye(N_CLASSES)[np.asarray(y)],
                          BETA, derivative)
        ports.append(([w.T for w in dW], [-LR * dE[i] for i in hidden]))  # SGD on E's gradient
    return [kernel(u) for u in updates], moved, ports


def test_lra_step_equals_the_authors_lra_e_but_for_their_missing_f_prime():
    ngf, moved, ((authors, authors_e), (with_f_prime, with_f_prime_e)) = compare()
    assert_same_step(ngf[-1:], authors[-1:])  # the output layer: e = softmax − onehot in both
    assert_same_step(moved[-1:], authors_e[-1:])  # and its E moves by its W's change in both
    for got, theirs in zip(ngf[:-1], authors[:-1]):  # the hidden layers: theirs lack f'(h)
        assert np.abs(got - theirs).max() > 0.05 * np.abs(theirs).max()
    assert_same_step(ngf, with_f_prime)  # every layer, once their e carries f'(h)
    assert_same_step(moved, with_f_prime_e)  # E' − E = γ C: their E's SGD step on W's gradient
    assert_flip_detected(ngf, with_f_prime, leaf=0)
    assert_flip_detected(ngf[-1:], authors[-1:], leaf=0)
    assert_flip_detected(moved, with_f_prime_e, leaf=1)
