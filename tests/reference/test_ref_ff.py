"""ff against loeweX/Forward-Forward (``src/ff_model.py`` 57–170, ``src/ff_mnist.py`` 30–52; port_ff.py):
one step on a 20-16-12-5 relu mlp, batch 8, float64, predict=head (their downstream classifier), the
default peer normalisation 0.03 and activation_grad=full (their ReLU_full_grad). The negative labels
are ngf's draw from the step key, given to the port. Factor 1 (both are gradients the optimiser
descends) for both hidden layers' weights and biases and the head; ngf's output node has no
counterpart in their model (they have no output layer) and is not compared."""

import jax
import numpy as np

from ngf.plugins.ff import counted_nodes, ff, negative_labels
from port_ff import ff_step
from reference_kit import assert_flip_detected, assert_same_step, float64
from reference_r3 import N_CLASSES, batch, dense, network, own_step

FACTOR = 1.0


def test_ff_step_equals_the_authors_port():
    with float64():
        net, params = network("relu")
        x, y = batch()
        key = jax.random.key(7)
        rng = np.random.default_rng(1)
        head = jax.numpy.asarray(rng.normal(0, 0.3, (12, N_CLASSES)))  # their zeros would hide a wrong input
        _, updates = own_step(ff(predict="head"), net, params, x, y, key, rule_params=head, trace=False)
        wrong = jax.jit(lambda: negative_labels(key, net, params, x, y, N_CLASSES, "random", "sum",
                                                counted_nodes(params, None)))()  # ngf's draw
    kernels, biases = zip(*(dense(theta) for theta in params[:2]))
    grads, d_head = ff_step([k.T for k in kernels], biases, np.asarray(x), np.asarray(y), np.asarray(wrong),
                            N_CLASSES, np.asarray(head).T)
    assert np.all(np.asarray(wrong) != np.asarray(y))
    ngf = [dense(updates.params[l]) for l in range(2)] + [np.asarray(updates.rule_params)]
    port = [(dw.T, db) for dw, db in grads] + [d_head.T]
    assert_same_step(ngf, port, FACTOR)
    assert_flip_detected(ngf, port, FACTOR, leaf=0)  # layer 0's kernel
    assert_flip_detected(ngf, port, FACTOR, leaf=3)  # layer 1's bias
