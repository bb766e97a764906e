"""numpy port of one LRA-E step of the authors' code (Ororbia & Mali 2019, AAAI; Mali's repository).

Follows github.com/AnkurMali/LRA-E at 20943bf3e2c278664056d91d89efdc495a1b289e, ``mnist/mnist_torch.py``:

- lines 43-51: the layers have no bias; E_{i-1}, the error weights of layer i ≥ 1, is
  ``nn.Linear(size_{i+1}, size_i).weight``, [size_i, size_{i+1}]: ngf's E kernel layout [in, out];
- lines 59-75: tanh hidden layers, softmax probabilities z_last of the logits;
- lines 99-132 (``compute_lra_updates``): e_top = z_last − Y; walking down, d = e_i E_{i-1}ᵀ,
  y = tanh(h_{i-1} − β d), e_{i-1} = z_{i-1} − y;
- lines 134-146: dW_i = e_iᵀ z_{i-1} / B (z_{-1} = x), handed over as ``weight.grad`` [out, in] (line 163);
- lines 149-173: E_{i-1}'s gradient is z_{i-1}ᵀ e_i / B in E's layout (lines 155 and 173), the same
  numbers as W_i's: with one optimiser for W and E (line 198, AdamW), E moves as W does.

The error e_i = z_i − y_i carries no f'(h_i), and it is e_i that goes down through E. ngf's lra
(docs/rules.md#lra) uses δ_i = f'(h_i) ⊙ (z_i − y_i) for both; ``derivative=True`` makes that one
change, where e_{i-1} is formed (line 132), to show it is the only difference. The output layer's
update is the same either way. ngf averages over the batch too: factor 1, sign +1 (both descend).

The TensorFlow original, ``mnist/mnist.py`` lines 142-203, computes the same errors but sums dW
over the batch (no 1/B), and updates its square E2, E3 with dW's transpose (E4 with dW itself).
"""

from __future__ import annotations

import numpy as np


def softmax(a: np.ndarray) -> np.ndarray:
    """Row-wise softmax (line 74)."""
    p = np.exp(a - a.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def lra_step(W: list, E: dict, x: np.ndarray, onehot: np.ndarray, beta: float, derivative: bool = False):
    """One step's gradients: ([dW_i] in torch's [out, in] layout, {i: dE} in E's layout, keyed by the layer i ≥ 1).

    ``W`` are torch's [out, in] weights, ``E[i]`` layer i's error weights [size_i, size_{i+1}].
    """
    hs, zs = [], [x]  # pre-activations h_i and activations z_i of the hidden layers (lines 69-73)
    for w in W[:-1]:
        hs.append(zs[-1] @ w.T)
        zs.append(np.tanh(hs[-1]))
    e = {len(W) - 1: softmax(zs[-1] @ W[-1].T) - onehot}  # e_last = z_last − Y (line 108)
    for i in range(len(W) - 1, 0, -1):  # lines 119-132
        d = e[i] @ E[i].T  # d_i = e_i E_{i-1}ᵀ
        y = np.tanh(hs[i - 1] - beta * d)  # y_z = tanh(h_{i-1} − β d)
        e[i - 1] = zs[i] - y  # e_{i-1} = z_{i-1} − y_z
        if derivative:  # ngf's δ: the one change, not in their code
            e[i - 1] = (1.0 - zs[i] ** 2) * e[i - 1]
    n = x.shape[0]
    dW = [e[i].T @ zs[i] / n for i in range(len(W))]  # e_iᵀ z_{i-1} / B (lines 135-146)
    dE = {i: zs[i].T @ e[i] / n for i in E}  # dW_e = e_iᵀ z_{i-1} / B, transposed into E (lines 150-173)
    return dW, dE
