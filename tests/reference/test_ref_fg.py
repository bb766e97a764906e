"""fg against Ren et al. 2023's code and Baydin et al. 2022's equation (port_fg.py), one step on a
20-16-12-5 relu mlp, batch 8, float64, K = 2 tangents, both sides given ngf's tangents.

mode=activity: google-research ``local_forward_gradient`` (``train_mixer_supervised.py``
``update_forward_grad_activations``, ``loss``, ``sample_activation_noise``; ``spatial_avg_linear_v2.py``;
``mixer_lib.py``), each hidden layer a block of one layer, one token, groups = 1 (their inter_ln
normalises each group of channels, ngf's head LN all of a node's channels: equal for one group), the
same heads. Factor 1 for the hidden layers and the heads; 1/0.1 for the output node (their readout's
gradient is × last_layer_lr 0.1).

mode=weights: no code of Baydin et al. is public; their Algorithm 1, g = (∇f · v) v with v ~ N(0, I)
over all the parameters, ∇f by backprop in numpy, with ngf's v (``ravel_pytree`` order, the step key).
Factor 1. An expected value over tangents cannot be compared in one draw; the same draw can."""

import jax
import numpy as np
from jax.flatten_util import ravel_pytree

from ngf.plugins.fg import activity_tangents, fg
from port_fg import activity_step, weight_step
from reference_kit import assert_flip_detected, assert_same_step, float64
from reference_r3 import N_CLASSES, batch, dense, network, own_step

FACTOR, READOUT_FACTOR, K = 1.0, 1.0 / 0.1, 2


def test_fg_activity_step_equals_ren_et_al():
    rng = np.random.default_rng(3)
    heads = tuple({"w": rng.normal(0, 0.3, (d, N_CLASSES)), "b": rng.normal(0, 0.1, N_CLASSES)} for d in (16, 12))
    key = jax.random.key(4)
    with float64():
        net, params = network("relu")
        x, y = batch()
        rule_params = jax.tree.map(jax.numpy.asarray, heads) + (None,)
        _, updates = own_step(fg(tangents=K, groups=1), net, params, x, y, key, rule_params=rule_params)
        tangents = jax.jit(lambda: activity_tangents(key, net.forward(params, x)[1], rule_params, K))()  # ngf's draw
    layers = [dense(theta) for theta in params]
    noises = [[np.asarray(tangents[l][k]) for l in range(2)] for k in range(K)]
    grads, head_grads, readout = activity_step(np.asarray(x), np.asarray(y), layers[:2],
                                               [(h["w"], h["b"]) for h in heads], layers[2], noises, N_CLASSES, 1)
    ngf = [dense(updates.params[l]) for l in range(2)] + [(h["w"], h["b"]) for h in updates.rule_params[:2]]
    port = grads + head_grads
    assert_same_step(ngf, port, FACTOR)
    assert_same_step(dense(updates.params[2]), readout, READOUT_FACTOR)
    assert_flip_detected(ngf, port, FACTOR, leaf=0)  # node 0's kernel
    assert_flip_detected(ngf, port, FACTOR, leaf=4)  # node 0's head


def test_fg_weights_step_equals_baydin_et_al_algorithm_1():
    key = jax.random.key(5)
    with float64():
        net, params = network("relu")
        x, y = batch()
        _, updates = own_step(fg(mode="weights", tangents=K), net, params, x, y, key, trace=False)
        flat, unravel = ravel_pytree(params)
        draws = jax.random.normal(key, (K,) + flat.shape, flat.dtype)  # ngf's v, one row per tangent
    tangents = [[dense(theta) for theta in unravel(v)] for v in draws]
    port = weight_step(np.asarray(x), np.asarray(y), [dense(theta) for theta in params], tangents, N_CLASSES)
    ngf = [dense(u) for u in updates.params]
    assert_same_step(ngf, port, FACTOR)
    assert_flip_detected(ngf, port, FACTOR, leaf=0)
