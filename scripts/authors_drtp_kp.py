"""DRTP (Frenkel et al.'s code) and Kolen–Pollack (Akrout et al.'s code) on MNIST, in JAX.

Part of scripts/authors_protocols.py, which runs them. Citations are
ChFrenkel/DirectRandomTargetProjection and makrout/Deep-Learning-without-Weight-Transport,
file:line at their default branches.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

CONV = ("NHWC", "HWIO", "NHWC")


def torch_default(key, shape: tuple, fan_in: int) -> tuple:
    """nn.Linear / nn.Conv2d reset_parameters: kaiming_uniform(a=√5) = U(±1/√fan_in), bias the same."""
    bound = 1.0 / math.sqrt(fan_in)
    k1, k2 = jax.random.split(key)
    return (jax.random.uniform(k1, shape, minval=-bound, maxval=bound),
            jax.random.uniform(k2, (shape[-1],), minval=-bound, maxval=bound))


def kaiming_uniform_feedback(key, n_out: int) -> jax.Array:
    """module.py:97, kaiming_uniform_ on a [10, n_out] tensor: U(±√(6/n_out)) (gain √2, fan_in = size(1)·…)."""
    bound = math.sqrt(6.0 / n_out)
    return jax.random.uniform(key, (10, n_out), minval=-bound, maxval=bound)


@jax.custom_vjp
def drtp_hook(z, targets, feedback):
    """function.py:39-66, HookFunction: identity forward; backward replaces ∂L/∂z by targets·B (DRTP)."""
    return z


def _hook_fwd(z, targets, feedback):
    return z, (z, targets, feedback)


def _hook_bwd(res, grad):
    z, targets, feedback = res
    # function.py:62: grad_output_est = labels.mm(B.view(10, -1)).view(grad_output.shape); no 1/N
    return (targets @ feedback).reshape(z.shape).astype(grad.dtype), jnp.zeros_like(targets), jnp.zeros_like(feedback)


drtp_hook.defvjp(_hook_fwd, _hook_bwd)


def pool2(z):
    """nn.MaxPool2d(kernel_size=2, stride=2) (models.py:159)."""
    return lax.reduce_window(z, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def drtp_forward(params, feedback, x, targets):
    """models.py:112-167 for CONV_32_5_1_2_FC_1000_FC_10 or FC_1000_FC_10 (tanh hidden, sigmoid output).

    Hidden blocks: layer → tanh → hook (→ pool for a convolution: the hook sits BEFORE the
    pool, models.py:163-166). The output block is trained by BP (models.py:105). Returns
    the output's pre-activation h (sigmoid(h) is the output).
    """
    h = x
    if "conv" in params:
        w, b = params["conv"]
        z = jnp.tanh(lax.conv_general_dilated(h, w, (1, 1), [(2, 2), (2, 2)], dimension_numbers=CONV) + b)
        h = pool2(drtp_hook(z, targets, feedback["conv"]) if targets is not None else z)
        h = h.reshape(h.shape[0], -1)  # models.py:114-115
    w, b = params["fc1"]
    z = jnp.tanh(h @ w + b)
    h = drtp_hook(z, targets, feedback["fc1"]) if targets is not None else z
    w, b = params["out"]
    return h @ w + b


def drtp_init(conv: bool):
    """models.py:42-106 with torch's default init; B per hidden block (module.py:89-98)."""
    def init(key):
        keys = jax.random.split(key, 6)
        params, feedback, fan = {}, {}, 784
        if conv:
            params["conv"] = torch_default(keys[0], (5, 5, 1, 32), 25)
            feedback["conv"] = kaiming_uniform_feedback(keys[1], 28 * 28 * 32)  # dim_hook [10, 32, 28, 28]
            fan = 14 * 14 * 32
        params["fc1"] = torch_default(keys[2], (fan, 1000), fan)
        feedback["fc1"] = kaiming_uniform_feedback(keys[3], 1000)
        params["out"] = torch_default(keys[4], (1000, 10), 1000)
        velocity = jax.tree.map(jnp.zeros_like, params)
        return params, velocity, feedback
    return init


def drtp_step(state, x, labels, key, lr):
    """train.py:98-108 with main.py's defaults: BCE on the sigmoid output, NAG (SGD, momentum 0.9, nesterov)."""
    params, velocity, feedback = state
    targets = jax.nn.one_hot(labels, 10)  # train.py:103

    def loss(p):
        h = drtp_forward(p, feedback, x, targets)
        # F.binary_cross_entropy(sigmoid(h), y), mean over batch × 10 (train.py:73, 106)
        return jnp.mean(jax.nn.softplus(h) - targets * h)

    grads = jax.grad(loss)(params)
    # torch.optim.SGD(momentum=0.9, nesterov=True): v ← μv + g; p ← p − lr (g + μ v)  (train.py:61)
    velocity = jax.tree.map(lambda v, g: 0.9 * v + g, velocity, grads)
    params = jax.tree.map(lambda p, g, v: p - lr * (g + 0.9 * v), params, grads, velocity)
    return params, velocity, feedback


def drtp_predict(state, x):
    """The test pass (train.py:124), labels None: no hook."""
    return drtp_forward(state[0], state[2], x, None)


def kp_init(key):
    """FCNN_BP.py:29-31 and FCNN_FA.py:30: W, b and B ~ N(0, 1/(n_in + n_out)), 784-500-10."""
    sizes, keys = (784, 500, 10), jax.random.split(key, 6)
    std = [math.sqrt(1.0 / (a + b)) for a, b in zip(sizes[:-1], sizes[1:])]
    weights = [s * jax.random.normal(k, (a, b)) for s, k, a, b in zip(std, keys[:2], sizes[:-1], sizes[1:])]
    biases = [s * jax.random.normal(k, (b,)) for s, k, b in zip(std, keys[2:4], sizes[1:])]
    backward = [s * jax.random.normal(k, (a, b)) for s, k, a, b in zip(std, keys[4:], sizes[:-1], sizes[1:])]
    return weights, biases, backward


def kp_step(state, x, labels, key, lr):
    """FCNN_FA.py:90-141 (deltas through B) and FCNN_KP.py:57-73 (W and B take the same change)."""
    weights, biases, backward = state
    y, n = jax.nn.one_hot(labels, 10), x.shape[0]
    z1 = jax.nn.sigmoid(x @ weights[0] + biases[0])  # FCNN_BP.py:87-91, sigmoid on every layer
    out = jax.nn.sigmoid(z1 @ weights[1] + biases[1])
    d2 = out - y  # FCNN_FA.py:117, sigmoid cross-entropy's derivative
    d1 = (d2 @ backward[1].T) * z1 * (1 - z1)  # FCNN_FA.py:135: B δ ⊙ σ'
    dw = [x.T @ d1, z1.T @ d2]  # batch sums (np.dot over the batch)
    db = [jnp.mean(d1, 0), jnp.mean(d2, 0)]  # FCNN_FA.py:120, 136: batch means
    # FCNN_KP.py:64-73 with weight_decay = 1 (main.py:122 passes none):
    # W ← W − (η/N) ΔW, B alike, b ← b − (η/N) Δb
    weights = [w - lr / n * g for w, g in zip(weights, dw)]
    backward = [bk - lr / n * g for bk, g in zip(backward, dw)]
    biases = [b - lr / n * g for b, g in zip(biases, db)]
    return weights, biases, backward


def kp_predict(state, x):
    """FCNN_BP's forward pass; argmax of the sigmoid outputs."""
    weights, biases, _ = state
    return jax.nn.sigmoid(jax.nn.sigmoid(x @ weights[0] + biases[0]) @ weights[1] + biases[1])


DRTP_KP = {
    # main.py:55-67 defaults: NAG, BCE, lr 1e-4, batch 100, 100 epochs, tanh/tanh/sigmoid, no dropout
    "drtp-fc": dict(init=drtp_init(False), step=drtp_step, predict=drtp_predict, lr=lambda e: 1e-4,
                    batch=100, shuffle=True, flat=True),
    "drtp-conv": dict(init=drtp_init(True), step=drtp_step, predict=drtp_predict, lr=lambda e: 1e-4,
                      batch=100, shuffle=True),
    # README.md's MNIST kp command: 500 hidden, batch 128, lr 0.3; get_batch (FCNN_BP.py:95-106) neither
    # shuffles nor keeps the last 96 images (n_batches = int(60000/128), FCNN_KP.py:47)
    "kp": dict(init=kp_init, step=kp_step, predict=kp_predict, lr=lambda e: 0.3, batch=128,
               shuffle=False, flat=True, drop_last=True),
}
