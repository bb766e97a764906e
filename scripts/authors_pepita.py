"""PEPITA (Dellaferrera & Kreiman's code) on MNIST, in JAX: their FC network and their conv network.

Part of scripts/authors_protocols.py, which runs them. Citations are GiorgiaD/PEPITA,
file:line at its default branch; "nb" is Tutorial_PEPITA_FullyConnectedNets_CIFAR-10.ipynb,
cited by cell (its code cells 4 and 6).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

from authors_drtp_kp import CONV, pool2

KEEP = 0.9  # nb cell 6 "keep_rate = 0.9"; README's MNIST commands --dropout 0.9 (a keep rate)


def projection(key) -> jax.Array:
    """F ("B" in the code), [784, 10]: U(±0.05·√(6/784)) (nb cell 6; main_pytorch.py:288-290, Bstd 0.05)."""
    bound = 0.05 * math.sqrt(6.0 / 784)
    return jax.random.uniform(key, (784, 10), minval=-bound, maxval=bound)


def fc_init(key):
    """nb cell 4, NetFC1x1024DOcust for MNIST (fc1_nin = 784): no biases, He uniform U(±√(6/fan_in))."""
    k1, k2, k3 = jax.random.split(key, 3)
    w1 = jax.random.uniform(k1, (784, 1024), minval=-math.sqrt(6 / 784), maxval=math.sqrt(6 / 784))
    w2 = jax.random.uniform(k2, (1024, 10), minval=-math.sqrt(6 / 1024), maxval=math.sqrt(6 / 1024))
    params = (w1, w2)
    return params, jax.tree.map(jnp.zeros_like, params), projection(k3)


def fc_forward(params, x, mask):
    """nb cell 4 forward: relu(fc1) × dropout mask (shared by both passes), softmax(fc2)."""
    z = jax.nn.relu(x @ params[0]) * mask
    return z, jax.nn.softmax(z @ params[1])


def fc_step(state, x, labels, key, lr):
    """nb cell 6, one batch: two forward passes, ΔW from the two, momentum 0.9 on η ΔW / batch."""
    params, velocity, f = state
    y = jax.nn.one_hot(labels, 10)
    mask = jax.random.bernoulli(key, KEEP, (x.shape[0], 1024)) / KEEP  # one mask for both passes
    z, out = fc_forward(params, x, mask)
    x_mod = x + (out - y) @ f.T  # error_input = error @ B.T; mod_inputs = inputs + error_input
    z_mod, out_mod = fc_forward(params, x_mod, mask)
    # first layer: −(h − h_err)ᵀ x_err; last layer: −e_errᵀ h_err (torch's [out, in] layout, here [in, out])
    delta = (-(x_mod.T @ (z - z_mod)), -(z_mod.T @ (out_mod - y)))
    # v ← γ v + η ΔW / batch_size; W ← W + v (the notebook divides by its batch_size, 64, every batch)
    velocity = tuple(0.9 * v + lr * d / 64 for v, d in zip(velocity, delta))
    return tuple(w + v for w, v in zip(params, velocity)), velocity, f


def fc_predict(state, x):
    """nb cell 6's test pass: do_masks=None (no dropout)."""
    return fc_forward(state[0], x, 1.0)[1]


def conv_init(key):
    """models.py:27-38, Net1conv1fcXL: conv 1→32 5×5 and fc 4608→10, no biases; torch's default init
    (main_pytorch.py parses --w_init but never applies it): U(±1/√fan_in)."""
    k1, k2, k3 = jax.random.split(key, 3)
    w_conv = jax.random.uniform(k1, (5, 5, 1, 32), minval=-1 / 5, maxval=1 / 5)
    w_fc = jax.random.uniform(k2, (4608, 10), minval=-1 / math.sqrt(4608), maxval=1 / math.sqrt(4608))
    params = (w_conv, w_fc)
    return params, jax.tree.map(jnp.zeros_like, params), projection(k3)


def conv_relu(w, x):
    """relu(conv1(x)), 'valid': [N, 24, 24, 32] (the activation the code records, main_pytorch.py:416)."""
    return jax.nn.relu(lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=CONV))


def conv_step(state, x, labels, key, lr):
    """main_pytorch.py:399-503 for Net1conv1fcXL with --is_pool (needed: without it the fc update of
    line 441 is 18432 wide for a 4608-wide layer), update_type mom."""
    (w_conv, w_fc), velocity, f = state
    y, n = jax.nn.one_hot(labels, 10), x.shape[0]
    z = conv_relu(w_conv, x)
    error = jax.nn.softmax(pool2(z).reshape(n, -1) @ w_fc) - y  # line 418: outputs − onehot (softmax in the model)
    x_mod = x + (error @ f.T).reshape(x.shape)  # lines 421-423
    z_mod = conv_relu(w_conv, x_mod)
    # line 443: the only fc layer after the convolutions: −errorᵀ · pool(z_mod), the FIRST pass's error
    d_fc = -(pool2(z_mod).reshape(n, -1).T @ error)
    # lines 481-485 and models.py:56-101: Σ over the 24×24 output positions of the batch mean of
    # (z − z_mod) ⊗ x_mod's patch, ÷ 576 positions; the sign is +, unlike the fc layers'
    _, vjp = jax.vjp(lambda w: lax.conv_general_dilated(x_mod, w, (1, 1), "VALID", dimension_numbers=CONV), w_conv)
    d_conv = vjp(z - z_mod)[0] / (n * 24 * 24)
    # lines 501-503: v ← γ v + η ΔW / batch_size; W ← W + v (the conv's ΔW is already a batch mean)
    velocity = tuple(0.9 * v + lr * d / n for v, d in zip(velocity, (d_conv, d_fc)))
    return (w_conv + velocity[0], w_fc + velocity[1]), velocity, f


def conv_predict(state, x):
    """The test pass (main_pytorch.py:530)."""
    w_conv, w_fc = state[0]
    return pool2(conv_relu(w_conv, x)).reshape(x.shape[0], -1) @ w_fc


def pepita_fc_lr(epoch: int) -> float:
    """README.md's MNIST command --eta 0.1; ×0.1 at epochs 60 and 90 (nb cell 6; functions.py:424-426)."""
    return 0.1 * 0.1 ** sum(epoch >= m for m in (60, 90))


def pepita_conv_lr(epoch: int) -> float:
    """README.md's conv command --eta 0.01; decay_scheme 1: ×0.1 at epochs 10, 30, 60 (main_pytorch.py:360-382)."""
    return 0.01 * 0.1 ** sum(epoch >= m for m in (10, 30, 60))


PEPITA = {
    "pepita-fc": dict(init=fc_init, step=fc_step, predict=fc_predict, lr=pepita_fc_lr, batch=64,
                      shuffle=True, flat=True),
    "pepita-conv": dict(init=conv_init, step=conv_step, predict=conv_predict, lr=pepita_conv_lr, batch=50,
                        shuffle=True),
}
