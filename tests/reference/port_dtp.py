"""numpy port of one step of Lee et al.'s difference target propagation (their ECML 2015 Theano code).

Follows github.com/donghyunlee/dtp at 9daa5b24c919b4395a9efc0ac940ba70303f2eeb, ``conti_dtp.py``:

- lines 38-45 and 60-62: the forward pass, F_l(x) = tanh(x W_l + B_l), softmax at the top;
- lines 47-53: the inverses G_l(h) = tanh(h V_l + C_l), one for each layer above the first and
  below the output (V_l is [out_l, in_l]: ngf's ω_l transposed);
- line 64, with ``util.py`` line 36: cost = NLL, the mean over the batch of −log p_y;
- lines 67-74: the targets, H_top_ = H_top − lr0 · ∂cost/∂H_top, H_{l-1}_ = H_{l-1} − G_l(H_l) + G_l(H_l_);
- lines 76-90, with ``util.py`` lines 41 and 45: the inverses' gradients of
  mse(G_l(F_l(H_{l-1} + ε)), H_{l-1} + ε), mse = ‖·‖² summed over units, mean over the batch;
- lines 92-100: the forward gradients, the output layer's of cost, each hidden layer's of
  mse(F_l(H_{l-1}), H_l_) with the target and the input held constant.

The Theano graph is differentiated by hand here (numpy has no autodiff). The noise ε is an
argument (their ``gaussian`` draws it inside the graph), so a test can give the port ngf's.

Conventions against ngf's ``dtp`` (docs/rules.md#dtp): their target step differentiates the batch
mean, so ngf's per-example η̂ = lr0 / batch; their mse has no ½, so ngf's hidden-layer and inverse
gradients are ½ of theirs, while the output layer's (the task loss) are equal.
"""

from __future__ import annotations

import numpy as np


def softmax(a: np.ndarray) -> np.ndarray:
    """Row-wise softmax (util.py line 26, ``sfmx``)."""
    p = np.exp(a - a.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def forward(W: list, B: list, x: np.ndarray) -> list:
    """H_0 = x, H_l = tanh(H_{l-1} W_l + B_l), and the softmax P on top (lines 38-45, 60-62)."""
    hs = [x]
    for l, (w, b) in enumerate(zip(W, B)):
        a = hs[-1] @ w + b
        hs.append(softmax(a) if l == len(W) - 1 else np.tanh(a))
    return hs


def inverse(v: np.ndarray, c: np.ndarray, h: np.ndarray) -> np.ndarray:
    """G_l(h) = tanh(h V_l + C_l) (lines 48-53)."""
    return np.tanh(h @ v + c)


def mse_grads(out: np.ndarray, target: np.ndarray, inp: np.ndarray) -> tuple:
    """∂ mse(tanh(inp M + c), target)/∂(M, c), mse = Σ_units (·)² averaged over the batch (util.py line 41)."""
    d = 2.0 * (out - target) / out.shape[0] * (1.0 - out ** 2)  # through tanh
    return inp.T @ d, d.sum(0)


def dtp_step(W: list, B: list, V: dict, C: dict, x: np.ndarray, y: np.ndarray, lr0: float, noise: dict):
    """One step's gradients: ([∂W_l], [∂B_l], {l: ∂V_l}, {l: ∂C_l}), layers counted from 0.

    ``V``, ``C`` and ``noise`` are keyed by the index of the layer that owns the inverse (1 … L-2);
    ``noise[l]`` is the corruption added to that layer's input H_{l} (0-based H_0 = x).
    """
    hs = forward(W, B, x)
    n, top = x.shape[0], len(W) - 1
    e = (hs[-1] - np.eye(W[-1].shape[1])[y]) / n  # ∂cost/∂(pre-softmax), cost the mean NLL (line 64)
    targets = {top: hs[top] - lr0 * e @ W[top].T}  # H_top_ = H_top − lr0 ∂cost/∂H_top (line 68)
    for l in range(top - 1, 0, -1):  # H_{l-1}_ = H_{l-1} − G_l(H_l) + G_l(H_l_) (lines 69-74)
        targets[l] = hs[l] - inverse(V[l], C[l], hs[l + 1]) + inverse(V[l], C[l], targets[l + 1])
    gW, gB = [None] * len(W), [None] * len(W)
    gW[top], gB[top] = hs[top].T @ e, e.sum(0)  # T.grad(cost, [W8, B8]) (line 93)
    for l in range(top):  # T.grad(mse(F_l(H_{l-1}), H_l_), [W_l, B_l]) (lines 94-100)
        gW[l], gB[l] = mse_grads(hs[l + 1], targets[l + 1], hs[l])
    gV, gC = {}, {}
    for l in V:  # T.grad(mse(G_l(F_l(H_c)), H_c), [V_l, C_l]), H_c = H_{l-1} + ε (lines 77-90)
        corrupted = hs[l] + noise[l]
        f = np.tanh(corrupted @ W[l] + B[l])
        gV[l], gC[l] = mse_grads(inverse(V[l], C[l], f), corrupted, f)
    return gW, gB, gV, gC
