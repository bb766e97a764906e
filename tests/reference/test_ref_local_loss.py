"""local-loss against anokland/local-loss (``train.py`` 471–640, 1219–1267, 1409–1419, 1499–1540;
port_local_loss.py): one predsim step at their β = 0.99 on a 20-16-12-5 relu mlp (their
--no-batch-norm, --dropout 0), batch 8, float64, both given the same heads. Their pred head starts at
zero, which gives the hidden layers no pred gradient at the first step; nonzero heads make the pred
path count. Factor 1 for every hidden layer's weights and biases and every head's gradient; the output
node's is 1/(1 − β): their layer_out learns from CE × (1 − β) under predsim, ngf's from the task loss."""

import jax
import numpy as np

from ngf.plugins.local_loss import local_loss
from port_local_loss import predsim_step
from reference_kit import assert_flip_detected, assert_same_step, float64
from reference_r3 import N_CLASSES, batch, dense, network, own_step

BETA = 0.99
FACTOR, OUTPUT_FACTOR = 1.0, 1.0 / (1.0 - BETA)


def heads(seed=2):
    """Pred and sim heads of both hidden nodes in ngf's layout ([features, classes], G [units, units])."""
    rng = np.random.default_rng(seed)
    return tuple({"pred_w": rng.normal(0, 0.5, (d, N_CLASSES)), "pred_b": rng.normal(0, 0.1, N_CLASSES),
                  "sim_g": rng.normal(0, 1 / np.sqrt(d), (d, d))} for d in (16, 12)) + (None,)


def test_local_loss_predsim_step_equals_the_authors_port():
    own = heads()
    with float64():
        net, params = network("relu")
        x, y = batch()
        rule = local_loss(loss="predsim", beta=BETA)
        rule_params = jax.tree.map(jax.numpy.asarray, own)
        _, updates = own_step(rule, net, params, x, y, jax.random.key(0), rule_params=rule_params)
    layers = [dense(theta) for theta in params]
    blocks = [((k.T, b), (h["pred_w"].T, h["pred_b"]), h["sim_g"].T) for (k, b), h in zip(layers[:2], own)]
    grads, (d_out_w, d_out_b) = predsim_step(blocks, (layers[2][0].T, layers[2][1]), np.asarray(x),
                                             np.asarray(y), N_CLASSES, BETA)
    ngf, port = [], []
    for l, g in enumerate(grads):
        got = updates.rule_params[l]
        ngf += [*dense(updates.params[l]), got["pred_w"], got["pred_b"], got["sim_g"]]
        port += [g["encoder"][0].T, g["encoder"][1], g["decoder_y"][0].T, g["decoder_y"][1], g["linear_loss"].T]
    assert_same_step(ngf, port, FACTOR)
    assert_same_step(list(dense(updates.params[2])), [d_out_w.T, d_out_b], OUTPUT_FACTOR)
    assert_flip_detected(ngf, port, FACTOR, leaf=0)  # node 0's kernel
    assert_flip_detected(ngf, port, FACTOR, leaf=9)  # node 1's sim head
