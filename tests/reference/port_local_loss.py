"""A numpy port of one training step of Nøkland & Eidnes's local-loss code (PyTorch), predsim on an mlp.
Repository github.com/anokland/local-loss at 7b3b40b941b2db305c59b56888a1165aefbfc178, ``train.py``:

- 471–640 ``LocalLossBlockLinear``: 552–559 h = ReLU(encoder(x)) (run with --no-batch-norm and
  --dropout 0, the forward pass ngf's models have); 566–574 Rh = similarity_matrix(linear_loss(h));
  611–622 predsim: loss = (1 − β) CE(decoder_y(h), y) + β mse(Rh, Ry), Ry = similarity_matrix(onehot y)
  (--alpha 0, 630); 634–640 backward on the block's own loss, the block's input detached.
- 1409–1419 ``similarity_matrix``: rows centred on their own mean, divided by 1e-8 + their norm,
  R = xn xnᵀ clamped to [−1, 1].
- 1219–1267 ``Net`` and 1499–1540 ``train``: the output layer ``layer_out`` learns from
  CE(output, y) × (1 − β) under predsim (1532–1534).

Torch's autograd is replaced by the derivatives written out; weights are torch's [out, in]. The port
returns the gradients each ``backward()`` leaves (the optimiser descends them): ngf's hidden updates and
heads' updates equal them with factor 1; ngf's output node learns from the task loss unscaled, so its
update is 1/(1 − β) × theirs.
"""

import numpy as np


def similarity(v):
    """``similarity_matrix`` (train.py:1409–1419) for a rank-2 v: (R, R before the clamp, the centred
    rows, their norms)."""
    c = v - v.mean(axis=1, keepdims=True)
    n = np.sqrt(np.sum(c ** 2, axis=1, keepdims=True))
    u = c / (1e-8 + n)
    return np.clip(u @ u.T, -1.0, 1.0), u @ u.T, c, n


def similarity_vjp(v, d_r):
    """∂/∂v of Σ d_r ⊙ similarity(v): back through the clamp, xn xnᵀ, the norm and the centring."""
    _, raw, c, n = similarity(v)
    d_r = d_r * ((raw >= -1) & (raw <= 1))                          # clamp passes where in range
    u = c / (1e-8 + n)
    d_u = (d_r + d_r.T) @ u                                          # R = u uᵀ
    d_c = d_u / (1e-8 + n) - c * np.sum(d_u * c, axis=1, keepdims=True) / (n * (1e-8 + n) ** 2)
    return d_c - d_c.mean(axis=1, keepdims=True)                     # the centring's Jacobian


def softmax(a):
    p = np.exp(a - a.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def block_grads(x, labels, n_classes, encoder, decoder_y, linear_loss, beta):
    """One ``LocalLossBlockLinear.forward`` under predsim: its output h and the gradients of its loss
    for encoder (W, b), decoder_y (W, b) and linear_loss (W), torch's layouts."""
    (w, b), (wd, bd) = encoder, decoder_y
    onehot, batch = np.eye(n_classes)[labels], len(x)
    pre = x @ w.T + b
    h = np.maximum(pre, 0.0)                                         # nonlin (train.py:554–559)
    v = h @ linear_loss.T                                            # h_loss = linear_loss(h) (573)
    r_h, r_y = similarity(v)[0], similarity(onehot)[0]
    d_v = similarity_vjp(v, beta * 2 * (r_h - r_y) / batch ** 2)    # β mse_loss(Rh, Ry) (621)
    d_logits = (1 - beta) * (softmax(h @ wd.T + bd) - onehot) / batch  # (1 − β) cross_entropy (620)
    d_h = d_v @ linear_loss + d_logits @ wd
    d_pre = d_h * (pre > 0)
    return h, {"encoder": (d_pre.T @ x, d_pre.sum(0)), "decoder_y": (d_logits.T @ h, d_logits.sum(0)),
               "linear_loss": d_v.T @ h}


def predsim_step(blocks, layer_out, x, labels, n_classes, beta):
    """The gradients one training step leaves: each block's (``block_grads``), then layer_out's (W, b)
    from CE × (1 − β) (train.py:1528–1538). ``blocks``: (encoder, decoder_y, linear_loss) per block."""
    grads, h = [], x
    for encoder, decoder_y, linear_loss in blocks:
        h_next, g = block_grads(h, labels, n_classes, encoder, decoder_y, linear_loss, beta)
        grads.append(g)
        h = h_next                                                   # h_return.detach_() (640)
    w, b = layer_out
    d_logits = (1 - beta) * (softmax(h @ w.T + b) - np.eye(n_classes)[labels]) / len(x)
    return grads, (d_logits.T @ h, d_logits.sum(0))
