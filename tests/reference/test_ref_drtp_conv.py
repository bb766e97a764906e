"""drtp on a pooled convolution against Frenkel et al.'s DRTP code, one step in float64 (docs/rules.md#authors-code).

Authors' code: github.com/ChFrenkel/DirectRandomTargetProjection, commit b84e3fe965bf98b8531f3036604cbe16424a5cc6:
``models.py`` lines 68-84 and 151-167 (``CNN_block``: conv → activation → hook → 2×2 max pool, the
hook's ``dim_hook = [label_features, out_channels, output_dim, output_dim]``, so D covers the
convolution's whole output before pooling), lines 85-106 and 127-148 (``FC_block``: fc → activation
→ hook; the output layer trained by BP), lines 112-116 (flatten in torch's [C, H, W] order),
``function.py`` lines 47-66 (in DRTP mode the gradient at the hooked output is
``labels.mm(fixed_fb_weights.view(-1, prod(shape[1:]))).view(grad_output.shape)``, whatever came
from above) and ``train.py`` lines 69-77 and 98-108 (one-hot targets; ``cross_entropy`` with
``--output-act none``). Ported below in numpy: a CONV_2_3_1_1_FC_5_FC_3 network, tanh, on 8×8×1.

ngf's ``placement="output"`` is the authors' placement: its D_l [size(z^l), classes] (z^l in NHWC
order) is the authors' D reshaped to [classes, channels, H, W]. Factors (ngf = factor × the authors'
``.grad``): hidden nodes, the convolution and the hidden dense layer, −1/N (ngf's target is
−onehot(y) where the authors inject +onehot(y) as a gradient, and ngf averages over the batch where
the authors sum); the output layer, BP in both under CE, 1. ``placement="read"`` (ngf's default)
is not the authors' on the convolution (D_l sized to the pooled output, landing on the pooling's
winners only); on the dense layers the two placements and the authors' code agree.
"""

import jax
import numpy as np
import pytest
from flax import nnx

from ngf.core.network import Network
from ngf.models.cnn import cnn
from ngf.plugins.drtp import drtp
from ref_conv import conv_step
from reference_kit import as_float64, assert_flip_detected, assert_same_step, float64

BATCH, SIDE, CHANNELS, WIDTH, CLASSES = 4, 8, 2, 5, 3
HIDDEN_FACTOR = -1.0 / BATCH  # ngf's hidden update = −(1/N) × the authors' grad
OUTPUT_FACTOR = 1.0  # the output layer: BP of the batch-mean cross-entropy in both


def conv2d(x, w, pad):
    """torch's ``conv2d`` (cross-correlation, stride 1): x [N, I, H, W], w [O, I, k, k] → [N, O, H', W']."""
    k = w.shape[-1]
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    rows, cols = x.shape[2] - k + 1, x.shape[3] - k + 1
    patches = np.stack([x[:, :, u:u + rows, v:v + cols] for u in range(k) for v in range(k)], -1)  # [N, I, H', W', k²]
    return np.einsum("nirck,oik->norc", patches, w.reshape(w.shape[0], w.shape[1], k * k))


def conv2d_weight_grad(x, g, k, pad):
    """∂/∂w of Σ g ⊙ conv2d(x, w): Σ_n Σ_(r,c) g[n, o, r, c] · x_pad[n, i, r+u, c+v], [O, I, k, k]."""
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    rows, cols = g.shape[2], g.shape[3]
    return np.stack([np.einsum("norc,nirc->oi", g, x[:, :, u:u + rows, v:v + cols])
                     for u in range(k) for v in range(k)], -1).reshape(g.shape[1], x.shape[1], k, k)


def max_pool(z):
    """nn.MaxPool2d(2, 2) on [N, C, H, W]; also the 0/1 mask of each window's maximum."""
    n, c, h, w = z.shape
    blocks = z.reshape(n, c, h // 2, 2, w // 2, 2)
    pooled = blocks.max(axis=(3, 5))
    return pooled, (blocks == pooled[:, :, :, None, :, None]).reshape(z.shape)


def drtp_conv_grads(weights, feedback, x, labels):
    """One ``loss_val.backward()`` of the authors' CONV-FC-FC DRTP network: each layer's (weight.grad, bias.grad).

    ``weights``: (conv [O, I, 3, 3], bias), (fc [5, O·H/2·W/2], bias), (fc [3, 5], bias), torch's layouts.
    ``feedback``: the conv hook's D [classes, O, H, W] and the hidden fc hook's D [classes, 5] (module.py:91).
    """
    (wc, bc), (w1, b1), (w2, b2) = weights
    h0 = conv2d(x, wc, pad=1) + bc[None, :, None, None]  # CNN_block: conv (padding 1), models.py:163
    z0 = np.tanh(h0)  # act, then the hook (identity forward), then the pool
    pooled, _ = max_pool(z0)
    flat = pooled.reshape(len(x), -1)  # x.reshape(x.size(0), -1), models.py:114-115
    h1 = flat @ w1.T + b1
    z1 = np.tanh(h1)
    h2 = z1 @ w2.T + b2
    onehot = np.eye(CLASSES)[labels]  # train.py:103
    p = np.exp(h2 - h2.max(1, keepdims=True))
    g2 = (p / p.sum(1, keepdims=True) - onehot) / len(x)  # F.cross_entropy, mean over N
    g1 = (onehot @ feedback[1]) * (1 - z1 ** 2)  # the fc hook: labels.mm(D), function.py:62; then tanh'
    g0 = (onehot @ feedback[0].reshape(CLASSES, -1)).reshape(z0.shape) * (1 - z0 ** 2)  # the conv hook, every position
    return [(conv2d_weight_grad(x, g0, 3, pad=1), g0.sum(axis=(0, 2, 3))),
            (g1.T @ flat, g1.sum(0)), (g2.T @ z1, g2.sum(0))]


def network():
    """ngf's CONV_2_3_1_1_FC_5_FC_3 (cnn, tanh, SAME, 2×2 pool) with random biases, in float64."""
    model = cnn((SIDE, SIDE, 1), CLASSES, rngs=nnx.Rngs(0), channels=(CHANNELS,), widths=(WIDTH,),
                activation="tanh", kernel=3, pool=2, padding=("same",))
    net, params = Network.from_model(model, (SIDE, SIDE, 1))
    keys = jax.random.split(jax.random.key(5), len(params))  # b ~ 0.3·N(0, 1): biases enter the comparison
    return net, tuple(jax.tree_util.tree_map_with_path(lambda path, a, k=k: (
        0.3 * jax.random.normal(k, a.shape, a.dtype) if "bias" in jax.tree_util.keystr(path) else a), theta)
        for theta, k in zip(as_float64(params), keys))


def sample():
    """Four 8×8×1 images (NHWC, float64) and their labels."""
    rng = np.random.default_rng(1)
    return rng.normal(size=(BATCH, SIDE, SIDE, 1)), np.array([0, 1, 2, 1])


def torch_layout(params):
    """ngf's kernels and biases in torch's layouts (conv [O, I, k, k]; fc [out, in], its input in [C, H, W] order)."""
    conv, fc1, fc2 = (theta["conv"] if "conv" in theta else theta["linear"] for theta in params)
    half = SIDE // 2
    w1 = np.asarray(fc1["kernel"]).reshape(half, half, CHANNELS, WIDTH).transpose(3, 2, 0, 1).reshape(WIDTH, -1)
    return [(np.asarray(conv["kernel"]).transpose(3, 2, 0, 1), np.asarray(conv["bias"])),
            (w1, np.asarray(fc1["bias"])), (np.asarray(fc2["kernel"]).T, np.asarray(fc2["bias"]))]


def ngf_layout(grads):
    """The port's grads as [conv kernel, conv bias, fc kernel, fc bias, out kernel, out bias] in ngf's layouts."""
    (gc, bc), (g1, b1), (g2, b2) = grads
    half = SIDE // 2
    g1 = g1.reshape(WIDTH, CHANNELS, half, half).transpose(2, 3, 1, 0).reshape(-1, WIDTH)
    return [gc.transpose(2, 3, 1, 0), bc, g1, b1, g2.T, b2]


def flat(updates):
    """ngf's per-node updates as [kernel, bias, …], numpy."""
    maps = [theta["conv"] if "conv" in theta else theta["linear"] for theta in updates]
    return [np.asarray(a) for m in maps for a in (m["kernel"], m["bias"])]


def test_output_placement_equals_the_authors_cnn_block():
    with float64():
        net, params = network()
        x, y = sample()
        _, updates, state = conv_step(drtp(placement="output"), net, params, x, y)
        d_conv, d_fc = (np.asarray(d) for d in state.feedback)  # [8·8·2, 3] in (h, w, c) order, [5, 3]
        feedback = [d_conv.reshape(SIDE, SIDE, CHANNELS, CLASSES).transpose(3, 2, 0, 1), d_fc.T]
        port = ngf_layout(drtp_conv_grads(torch_layout(params), feedback, x.transpose(0, 3, 1, 2), y))
        ngf = flat(updates)
    assert_same_step(ngf[:4], port[:4], HIDDEN_FACTOR)  # the convolution and the hidden dense layer
    assert_same_step(ngf[4:], port[4:], OUTPUT_FACTOR)
    assert_flip_detected(ngf[:4], port[:4], HIDDEN_FACTOR, leaf=0)  # the conv kernel's sign


def test_read_placement_differs_on_the_convolution_only():
    """ngf's default sends D_l s to the pooling's winners: a quarter of the positions, not the authors' every one."""
    with float64():
        net, params = network()
        x, y = sample()
        deltas, updates, state = conv_step(drtp(placement="read"), net, params, x, y)
        _, _, out_state = conv_step(drtp(placement="output"), net, params, x, y)
        assert np.asarray(state.feedback[0]).shape == (SIDE * SIDE * CHANNELS // 4, CLASSES)
        feedback = [np.zeros((CLASSES, CHANNELS, SIDE, SIDE)), np.asarray(state.feedback[1]).T]
        port = ngf_layout(drtp_conv_grads(torch_layout(params), feedback, x.transpose(0, 3, 1, 2), y))
        ngf = flat(updates)
    np.testing.assert_array_equal(np.asarray(state.feedback[1]), np.asarray(out_state.feedback[1]))
    assert np.mean(np.asarray(deltas[0]) != 0) == pytest.approx(0.25)  # one winner per 2×2 window
    assert_same_step(ngf[2:4], port[2:4], HIDDEN_FACTOR)  # the hidden dense layer: as the authors'
    assert_same_step(ngf[4:], port[4:], OUTPUT_FACTOR)
