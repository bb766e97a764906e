"""Numpy ports of one forward-gradient step: Ren et al. 2023's activity perturbation with local losses,
and Baydin et al. 2022's weight perturbation (no code of theirs is public: their Algorithm 1).

Ren, Kornblith, Liao & Hinton 2023, github.com/google-research/google-research, ``local_forward_gradient/``
(read through the code index at commit 35a5be244885197babac12954c71274ff76b27b7; the repository is too
large to fetch whole, so functions are cited by name):

- ``train_mixer_supervised.py`` ``block0`` (noise added after the linear map, before the ReLU; no
  ``post_linear_ln``: ngf's forward pass has none), ``predict`` (``inter_ln``: x_proj = normalize(x)
  before each block's head), ``loss`` (the fused head loss per [B, P, G], divided by B: ``denom``),
  ``sample_activation_noise`` (N(0, 1) per example, shaped like the layer's output),
  ``update_forward_grad_activations`` (g = jvp of the local losses w.r.t. the noise;
  grad_z = g · dz · mask, mask = post_act > 0, dz split into G contiguous groups; grad_w =
  einsum('npc,npd->cd', pre_act, grad_z), grad_b its sum; passes averaged (/M); each head's
  ``local_classif_grad`` × head_lr; the readout's ``global_classif_grad`` × last_layer_lr).
- ``spatial_avg_linear_v2.py`` ``spatial_avg_group_linear_cross_entropy_jvp_`` (dloss[n,p,g] =
  Σ_c dx[n,p,g,c]/P · (W_g (softmax − onehot))_c) and ``..._bwd_`` (the head's gradient, scaled by P·G,
  is the batch-mean cross-entropy's).
- ``mixer_lib.py`` ``layer_norm`` ((x − mean) · rsqrt(mean x² − mean² + 1e-5), no gain), ``linear``
  (x @ W + b, W [in, out] as ngf's kernel).

The port is an mlp: each hidden layer is a block of one layer with P = 1 token. Their inter_ln normalises
a block output of shape [B, P, G, C/G] over its last axis, that is per group; ngf's over all the node's
channels: the two agree for G = 1. The readout's gradient is × last_layer_lr (0.1), ngf's is not.
"""

import numpy as np

LN_EPS = 1e-5  # mixer_lib.layer_norm


def softmax(a):
    p = np.exp(a - a.max(axis=-1, keepdims=True))
    return p / p.sum(axis=-1, keepdims=True)


def layer_norm_jvp(x, dx):
    """``mixer_lib.layer_norm`` over the last axis and its jvp: (y, ẏ)."""
    mean = x.mean(-1, keepdims=True)
    inv = 1.0 / np.sqrt(np.mean(x ** 2, -1, keepdims=True) - mean ** 2 + LN_EPS)
    y = (x - mean) * inv
    dy = (dx - dx.mean(-1, keepdims=True)) * inv - y * np.mean(y * dx, -1, keepdims=True) * inv
    return y, dy


def head_jvp(z, dz, w, b, onehot, groups):
    """The block's local loss (``loss`` with the fused head) and its jvp per example and group,
    [B, G], already divided by B (``denom``): z, dz [B, C] the block's output and its tangent."""
    batch, channels = z.shape
    zg, dzg = z.reshape(batch, groups, -1), dz.reshape(batch, groups, -1)
    x_proj, dx_proj = layer_norm_jvp(zg, dzg)                           # inter_ln on [B, P, G, C/G]
    logits = x_proj.reshape(batch, -1) @ w + b
    d_logits = softmax(logits) - onehot                                 # dlogits_bwd
    w_ = w.reshape(groups, channels // groups, -1)
    dloss = np.einsum("ngc,gcd,nd->ng", dx_proj, w_, d_logits)          # P = 1: dx_avg = dx
    head = (x_proj.reshape(batch, -1).T @ d_logits / batch, d_logits.mean(0))  # local_classif_grad
    return dloss / batch, head


def activity_step(x, labels, layers, heads, readout, noises, n_classes, groups, last_layer_lr=0.1):
    """``update_forward_grad_activations`` on an mlp: per hidden layer (grad_w, grad_b), per head
    (grad_w, grad_b), and the readout's. ``noises[m][l]``: pass m's dz of hidden layer l, [B, units]."""
    onehot, passes = np.eye(n_classes)[labels], len(noises)
    grads = [(np.zeros_like(w), np.zeros_like(b)) for w, b in layers]
    pre_act = [x]
    for w, b in layers:                                                   # the primal pass (zero noise)
        pre_act.append(np.maximum(pre_act[-1] @ w + b, 0.0))
    for noise in noises:
        for l, ((w, b), (hw, hb), dz) in enumerate(zip(layers, heads, noise)):
            post = pre_act[l + 1]
            mask = (post > 0).astype(post.dtype)
            g, _ = head_jvp(post, dz * mask, hw, hb, onehot, groups)    # jvp through the ReLU: dz · 1[h > 0]
            grad_z = (g[:, :, None] * dz.reshape(len(x), groups, -1)).reshape(dz.shape) * mask
            grads[l] = (grads[l][0] + pre_act[l].T @ grad_z / passes, grads[l][1] + grad_z.sum(0) / passes)
    head_grads = [head_jvp(pre_act[l + 1], 0 * pre_act[l + 1], hw, hb, onehot, groups)[1]
                  for l, (hw, hb) in enumerate(heads)]                    # × head_lr = 1
    w, b = readout
    d_logits = (softmax(pre_act[-1] @ w + b) - onehot) / len(x)         # global_classif_grad
    return grads, head_grads, (last_layer_lr * pre_act[-1].T @ d_logits, last_layer_lr * d_logits.sum(0))


def backprop_gradient(x, labels, layers, n_classes):
    """∇L of the batch-mean cross-entropy of a relu mlp (the last layer linear), per layer (dW, db)."""
    zs, z = [x], x
    for l, (w, b) in enumerate(layers):
        z = z @ w + b
        z = np.maximum(z, 0.0) if l < len(layers) - 1 else z
        zs.append(z)
    delta = (softmax(zs[-1]) - np.eye(n_classes)[labels]) / len(x)
    grads = []
    for l in reversed(range(len(layers))):
        grads.append((zs[l].T @ delta, delta.sum(0)))
        delta = (delta @ layers[l][0].T) * (zs[l] > 0)
    return grads[::-1]


def weight_step(x, labels, layers, tangents, n_classes):
    """Baydin et al. 2022, Algorithm 1: g = (∇f(θ) · v) v for each tangent v (per layer (v_W, v_b)),
    averaged over the tangents; ∇f by backprop stands for their forward-mode directional derivative."""
    grad = backprop_gradient(x, labels, layers, n_classes)
    out = [(np.zeros_like(w), np.zeros_like(b)) for w, b in layers]
    for v in tangents:
        d = sum(np.sum(gw * vw) + np.sum(gb * vb) for (gw, gb), (vw, vb) in zip(grad, v))
        out = [(ow + d * vw / len(tangents), ob + d * vb / len(tangents)) for (ow, ob), (vw, vb) in zip(out, v)]
    return out
