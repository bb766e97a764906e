"""A numpy port of Webster, Choi & Ahn's Direct Kolen–Pollack hooks (no ngf import).

Source: github.com/webstah/dkp-gist, commit 15eeb15f0171c177d824a54030da3e66850e1a24:

- ``utils/gradfunctions.py`` lines 19-33 (``OutputHookFunction``: the gradient at the network's
  output is copied into ``grad_at_output``) and 65-96 (``DFAHookFunction.backward``, DKP mode: the
  gradient at a hidden layer's output becomes ``grad_at_output.mm(B_view)`` (93), and B's gradient is
  ``grad_at_output.t().mm(layer_out_view)`` (94), ``layer_out_view`` the hooked activation flattened);
- ``networks/conv.py`` lines 36-65: conv → (batch norm) → relu → hook, max-pool after the second
  convolution's hook, flatten, fc1 → relu → hook, fc2 (the output, trained by BP);
- ``main.py`` lines 45-46 (``F.cross_entropy``, the batch mean: ∂/∂h = (softmax(h) − onehot(y)) / N)
  and 176 (``optim.Adam(backward_params, weight_decay=1e-6)``: λ_B·B added to B's gradient).

Layouts are torch's: images NCHW, convolution weights [out, in, kh, kw], dense weights [out, in],
B of hidden layer l [classes, *z^l's shape]. Stride 1, no padding, no batch norm, no pooling.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _windows(x, weight):
    """x's kh × kw windows, [N, C, H', W', kh, kw] (a stride-1, unpadded ``nn.Conv2d``)."""
    return sliding_window_view(x, weight.shape[2:], axis=(2, 3))


def _layer(kind, w, b, inp):
    """``nn.Conv2d`` or ``nn.Linear`` (its input flattened first, ``torch.flatten(x, 1)``)."""
    if kind == "conv":
        return np.einsum("ncijab,ocab->noij", _windows(inp, w), w) + b[None, :, None, None]
    return inp.reshape(inp.shape[0], -1) @ w.T + b


def _weight_grad(kind, w, inp, grad_h):
    """(weight.grad, bias.grad) of one layer given the gradient at its pre-activation."""
    if kind == "conv":
        return np.einsum("noij,ncijab->ocab", grad_h, _windows(inp, w)), grad_h.sum((0, 2, 3))
    return grad_h.T @ inp.reshape(inp.shape[0], -1), grad_h.sum(0)


def dkp_grads(layers, backward, x, labels, decay):
    """One ``loss.backward()`` of a DKP network with relu hidden layers, each hooked after its relu.

    ``layers``: (kind, weight, bias) per layer, kind ``conv`` or ``fc``; ``backward[l]``: hidden
    layer l's B [classes, *z^l's shape]. Returns each layer's (weight.grad, bias.grad) and each
    hidden layer's B.grad + λ_B·B (what Adam with ``weight_decay=decay`` steps on).
    """
    inputs, hs, z = [], [], x
    for l, (kind, w, b) in enumerate(layers):
        inputs.append(z)
        hs.append(_layer(kind, w, b, z))
        z = np.maximum(hs[-1], 0.0) if l < len(layers) - 1 else hs[-1]
    logits = hs[-1]
    p = np.exp(logits - logits.max(1, keepdims=True))
    grad_at_output = (p / p.sum(1, keepdims=True) - np.eye(logits.shape[1])[labels]) / logits.shape[0]
    kind, w, _ = layers[-1]
    grads = [_weight_grad(kind, w, inputs[-1], grad_at_output)]  # the output layer, by BP
    b_grads = []
    for l in range(len(layers) - 2, -1, -1):
        kind, w, _ = layers[l]
        z_l = np.maximum(hs[l], 0.0)  # the hook's input, after the relu
        b_view = backward[l].reshape(backward[l].shape[0], -1)
        estimate = (grad_at_output @ b_view).reshape(z_l.shape)  # gradfunctions.py:93
        grads.insert(0, _weight_grad(kind, w, inputs[l], estimate * (hs[l] > 0)))  # relu's backward
        grad_b = grad_at_output.T @ z_l.reshape(z_l.shape[0], -1)  # gradfunctions.py:94
        b_grads.insert(0, grad_b.reshape(backward[l].shape) + decay * backward[l])  # Adam's weight_decay
    return grads, b_grads
