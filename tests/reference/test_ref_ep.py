"""ep against both authors' codebases (port_ep.py), one step each on a 20-16-12-5 mlp, batch 8, float64.

Scellier & Bengio (``model.py`` 8–188, ``train_model.py`` 59–62): ngf with rho=hard_sigmoid,
output=hard_sigmoid, --loss mse, nudge=random, their T₁ 20, T₂ 4, ε 0.5. Their cost ‖s − y‖² has no ½,
so their β = 0.5 is ngf's β = 1.0 (same F, same states); their update (mean E(s^β) − mean E(s⁰))/β
is then twice ngf's: factor ½ for every weight and bias. The sign of β is ngf's draw from the step key
(key 3 draws −1 in float64), given to the port.

Laborieux et al. (``model_utils.py`` 100–195, 927–1013): P_MLP with hard_sigmoid, --loss cel,
--thirdphase, T₁ 30, T₂ 10, β 0.1; ngf with step=1 (their s ← σ(∂Φ/∂s)), output=node (a linear
output state), nudge=symmetric, --loss ce. Factor 1."""

import jax
import numpy as np

from ngf.plugins.ep import ep
from port_ep import laborieux_step, scellier_step
from reference_kit import assert_flip_detected, assert_same_step, float64
from reference_r3 import N_CLASSES, batch, dense, network, own_step

SCELLIER_FACTOR, LABORIEUX_FACTOR = 0.5, 1.0


def ngf_step(rule, loss, key):
    """ngf's per-node (kernel, bias) updates of one step of ``rule``, the kernels and biases, x and y."""
    with float64():
        net, params = network("hard_sigmoid", loss=loss)
        x, y = batch()
        _, updates = own_step(rule, net, params, x, y, key, trace=False)
    layers = [dense(theta) for theta in params]
    return [dense(u) for u in updates.params], layers, np.asarray(x), np.asarray(y)


def test_ep_step_equals_scellier_bengio():
    key = jax.random.key(3)
    with float64():  # ngf's nudge=random draw (a float64 uniform under float64)
        sign = 1.0 if bool(jax.random.bernoulli(key)) else -1.0
    got, layers, x, y = ngf_step(ep(t1=20, t2=4, beta=1.0, step=0.5, nudge="random", output="hard_sigmoid"),
                                 "mse", key)
    port = scellier_step(x, y, [k for k, _ in layers], [b for _, b in layers], N_CLASSES, 20, 4, 0.5, 0.5 * sign)
    assert sign == -1.0
    assert_same_step(got, port, SCELLIER_FACTOR)
    assert_flip_detected(got, port, SCELLIER_FACTOR, leaf=0)
    assert_flip_detected(got, port, SCELLIER_FACTOR, leaf=5)


def test_ep_step_equals_laborieux_et_al():
    got, layers, x, y = ngf_step(ep(t1=30, t2=10, beta=0.1, step=1.0, nudge="symmetric"), "ce", jax.random.key(0))
    port = laborieux_step(x, y, [k.T for k, _ in layers], [b for _, b in layers], N_CLASSES, 30, 10, 0.1)
    port = [(dw.T, db) for dw, db in port]
    assert_same_step(got, port, LABORIEUX_FACTOR)
    assert_flip_detected(got, port, LABORIEUX_FACTOR, leaf=2)
