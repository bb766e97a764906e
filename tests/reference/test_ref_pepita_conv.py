"""pepita on a convolution against Dellaferrera & Kreiman's PEPITA code, one step in float64 (docs/rules.md#authors-code).

Authors' code: github.com/GiorgiaD/PEPITA, commit 3fe03d80b642fa6df8ed23fc1c6dc9247f98c63b:
``models.py`` lines 27-38 (``Net1conv1fcXL``: conv without bias → relu → 2×2 max pool → flatten →
dense without bias → softmax) and 56-101 (``compute_delta_w_conv``: for each output position, ``ev``
takes the batch mean of (z − z′) ⊗ u′ over the window; the sum over positions is divided by their
number P), ``main_pytorch.py`` lines 411-431 (pass 1, ``error = outputs - target_onehot``,
``mod_inputs = inputs + (error @ B.T).reshape_as(inputs)``, pass 2), 438-443 (the single dense layer
after the convolutions: ``delta_w = -error.T @ pool(z′).flatten(1)``, pass 1's error, as ngf),
472-491 (the convolution: ``out_diff = layers_act - mod_layers_act``, z − z′ after relu, before
pooling, at the pass-2 input) and 493-500 (``w += eta * delta_w_all / batch_size``). Ported below in
numpy on 8×8×1 images, a 3×3 convolution of 2 maps (6×6 positions), 3 classes.

What is compared: the change each code makes to a weight per unit learning rate, for ngf
−(its update) (plain SGD descends it), for the authors ``delta_w / batch_size``. The dense output
layer: factor 1. The convolution: factor −N·P (N the batch, P the output positions): the authors'
conv update has the opposite sign to their dense layers', averages over positions where ngf's
vjp_θ sums them, and divides by the batch twice (``ev``'s mean, then ``/ batch_size``). ngf keeps
the paper's sign (docs/rules.md#pepita). ngf's F [size(x), classes] is the authors' ``B`` as it is
(one channel: NHWC and NCHW flatten alike). Biases: the authors' layers have none; ngf's are 0
(the same forward passes) and their updates are not compared.
"""

import jax
import numpy as np
from flax import nnx

from ngf.core.network import Network
from ngf.models.conv import Conv, MaxPool
from ngf.models.layers import Dense, Sequential
from ngf.plugins.pepita import pepita
from ref_conv import conv_step
from reference_kit import as_float64, assert_flip_detected, assert_same_step, float64

BATCH, SIDE, KERNEL, MAPS, CLASSES = 4, 8, 3, 2, 3
OUT = SIDE - KERNEL + 1  # 6: the convolution's output side (no padding)
POSITIONS = OUT * OUT  # P = 36
CONV_FACTOR = -BATCH * POSITIONS  # ngf's change = −N·P × the authors' on the convolution
DENSE_FACTOR = 1.0  # and the same on the dense output layer


def forward(x, wc, wf):
    """``Net1conv1fcXL.forward`` on [N, 1, H, W]: relu(conv) [N, O, 6, 6], its pooled, flattened form, softmax."""
    patches = np.stack([x[:, :, u:u + OUT, v:v + OUT] for u in range(KERNEL) for v in range(KERNEL)], -1)
    z = np.maximum(np.einsum("nirck,oik->norc", patches, wc.reshape(MAPS, 1, -1)), 0.0)
    pooled = z.reshape(len(x), MAPS, OUT // 2, 2, OUT // 2, 2).max(axis=(3, 5)).reshape(len(x), -1)
    h = pooled @ wf.T
    p = np.exp(h - h.max(1, keepdims=True))
    return z, pooled, p / p.sum(1, keepdims=True)


def compute_delta_w_conv(inp, out_diff):
    """models.py:56-95: Σ over output positions of the batch mean of out_diff ⊗ window, divided by P."""
    delta_w = np.zeros((MAPS, inp.shape[1], KERNEL, KERNEL))
    for r in range(OUT):
        for c in range(OUT):
            window = inp[:, :, r:r + KERNEL, c:c + KERNEL]
            delta_w += np.mean(out_diff[:, :, r, c][:, :, None, None, None] * window[:, None], axis=0)  # ev, :98-101
    return delta_w / POSITIONS  # dw = dw/n, :92


def pepita_conv_changes(wc, wf, projection, x, labels):
    """One ERIN step of the authors' code: the change ``eta * delta_w / batch_size`` per unit eta, per layer."""
    onehot = np.eye(CLASSES)[labels]
    z, _, outputs = forward(x, wc, wf)
    error = outputs - onehot  # main_pytorch.py:418
    mod_inputs = x + (error @ projection.T).reshape(x.shape)  # :421-423
    mod_z, mod_pooled, _ = forward(mod_inputs, wc, wf)  # :426
    delta_conv = compute_delta_w_conv(mod_inputs, z - mod_z)  # :474-485, l == 0: inp = mod_inputs
    delta_fc = -error.T @ mod_pooled  # :443
    return [delta_conv / len(x), delta_fc / len(x)]  # :500


def network():
    """ngf's twin of the authors' net: Conv(1→2, 3×3, VALID, relu), Dense(18→3, pool 2×2); biases 0, float64."""
    rngs = nnx.Rngs(0)
    model = Sequential([Conv(1, MAPS, KERNEL, jax.nn.relu, padding="VALID", rngs=rngs),
                        Dense(MAPS * (OUT // 2) ** 2, CLASSES, pool=MaxPool(2), rngs=rngs)])
    net, params = Network.from_model(model, (SIDE, SIDE, 1))
    zero_bias = lambda path, a: 0 * a if "bias" in jax.tree_util.keystr(path) else a
    return net, tuple(jax.tree_util.tree_map_with_path(zero_bias, theta) for theta in as_float64(params))


def test_conv_change_is_minus_n_times_positions_the_authors():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(BATCH, SIDE, SIDE, 1)), np.array([0, 1, 2, 1])
    with float64():
        net, params = network()
        _, updates, state = conv_step(pepita(f_scale=0.5), net, params, x, y)
        kc, kf = np.asarray(params[0]["conv"]["kernel"]), np.asarray(params[1]["linear"]["kernel"])
        half = OUT // 2
        wf = kf.reshape(half, half, MAPS, CLASSES).transpose(3, 2, 0, 1).reshape(CLASSES, -1)  # torch's [out, (c, h, w)]
        conv, fc = pepita_conv_changes(kc.transpose(3, 2, 0, 1), wf, np.asarray(state.projection),
                                       x.transpose(0, 3, 1, 2), y)
        port = [conv.transpose(2, 3, 1, 0), fc.reshape(CLASSES, MAPS, half, half).transpose(2, 3, 1, 0).reshape(-1, CLASSES)]
        ngf = [-np.asarray(updates[0]["conv"]["kernel"]), -np.asarray(updates[1]["linear"]["kernel"])]
    assert_same_step(ngf[:1], port[:1], CONV_FACTOR)  # the convolution: −N·P
    assert_same_step(ngf[1:], port[1:], DENSE_FACTOR)  # the dense output layer: 1
    assert_flip_detected(ngf[:1], port[:1], CONV_FACTOR)
    assert float(np.abs(port[0]).max()) > 0  # pass 2 moved the convolution's outputs
