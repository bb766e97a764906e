"""numpy port of one step of DDTP-linear (Meulemans et al. 2020, their PyTorch code).

Follows github.com/meulemansalex/theoretical_framework_for_target_propagation at
b6ee350c238be645e9cb42e12c79606f28f20f11 (``final_configs/mnist_DDTPlinear.py``: network_type
``DMLPDTP2``, ``size_mlp_fb`` None, ``fb_activation`` linear, softmax output, tanh hidden layers):

- ``lib/train.py`` lines 72-74: the loss is ``nn.CrossEntropyLoss()``, the mean over the batch;
  lines 362-367 (``train_parallel``): the forward gradients, then the feedback gradients, from one batch;
- ``lib/direct_feedback_networks.py`` lines 598-632 and 718-729: the output target
  a_L − target_stepsize · ∂loss/∂a_L (the output's linear activation, softmax being in the loss);
  lines 392-432 (``DDTPRHLNetwork.backward``) and 434-453 (``backward_all``): the output layer learns
  toward that target, each hidden layer toward Q_i's difference target; lines 683-716: Q_i's noise
  ε on h_i, carried to the output's linear activation with the layers above (lines 489-499);
  lines 550-589: Q_i is a bias-free linear map for the last hidden layer and has a bias d_i otherwise;
- ``lib/direct_feedback_layers.py`` lines 312-337 (``DDTPMLPLayer.backward``): the target
  h_i + g_i(target) − g_i(a_L), g_i(v) = v Q_iᵀ + d_i; lines 339-370: the difference
  reconstruction loss (1/σ²) · mse(h_i + g_i(a_L + Δ) − g_i(a_L), h_i + ε), ``F.mse_loss``'s mean over
  batch and units;
- ``lib/dtp_layers.py`` lines 366-391 (``compute_forward_gradients``): teaching signal
  2 f'(a)(h − target) (2 (h − target) for the linear output), ∂W = teachingᵀ h_prev / B, ∂b = mean;
- ``lib/utils.py`` lines 215-223 (``choose_feedback_optimizer``): Q's Adam has
  ``weight_decay=feedback_wd``, adding wd · Q to Q's gradient.

Layouts are theirs: W_i is torch's [out, in], Q_i is ``nn.Linear(n_out, size_i).weight``, [size_i, n_out]
(ngf's Q as it is). Against ngf's ``ddtp`` (docs/rules.md#ddtp) at β = 1: ngf's forward updates are
batch / (2 · target_stepsize) × theirs, Q's gradient is σ² · size_i × theirs, and ngf's Q decay λ is
σ² · size_i · wd / 2; d_i's gradient is 0 (the bias cancels in the difference), and ngf's Q has none.
"""

from __future__ import annotations

import numpy as np


def softmax(a: np.ndarray) -> np.ndarray:
    """Row-wise softmax (inside ``nn.CrossEntropyLoss``)."""
    p = np.exp(a - a.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def forward_from(W: list, b: list, i: int, h: np.ndarray) -> np.ndarray:
    """The output's linear activation with layer i's output replaced by h (``dummy_forward_linear_output``)."""
    for j in range(i + 1, len(W)):
        a = h @ W[j].T + b[j]
        h = a if j == len(W) - 1 else np.tanh(a)
    return a


def layer_grads(teaching: np.ndarray, h_prev: np.ndarray) -> tuple:
    """∂W = teachingᵀ h_prev / B and ∂b = mean teaching (``compute_forward_gradients``, lines 385-387)."""
    return teaching.T @ h_prev / teaching.shape[0], teaching.mean(0)


def ddtp_step(W: list, b: list, Q: list, x: np.ndarray, y: np.ndarray, lr: float, sigma: float,
              noise: list, wd: list):
    """One step's gradients: ([∂W_i], [∂b_i], [∂Q_i]) for the hidden layers' Q_i (W in torch's layout).

    ``noise[i]`` is ε on h_i and ``wd[i]`` the weight decay of Q_i's optimiser.
    """
    hs, a = [x], None
    for j, (w, c) in enumerate(zip(W, b)):  # tanh hidden layers, linear output activation
        a = hs[-1] @ w.T + c
        hs.append(a if j == len(W) - 1 else np.tanh(a))
    n, top = x.shape[0], len(W) - 1
    grad = (softmax(a) - np.eye(a.shape[1])[y]) / n  # ∂ CrossEntropyLoss (mean) / ∂a_L
    target = a - lr * grad  # the output target (compute_output_target)
    gW, gb = [None] * len(W), [None] * len(W)
    gW[top], gb[top] = layer_grads(2.0 * (a - target), hs[top])  # linear output: teaching 2 (h − target)
    gQ = []
    for i in range(top):
        h = hs[i + 1]
        h_target = h + target @ Q[i].T - a @ Q[i].T  # h + g(target) − g(a_L): d_i cancels
        gW[i], gb[i] = layer_grads(2.0 * (1.0 - h ** 2) * (h - h_target), hs[i])  # 2 f'(a)(h − target)
        delta = forward_from(W, b, i, h + noise[i]) - a  # Δ = a_L(h_i + ε) − a_L(h_i)
        residual = delta @ Q[i].T - noise[i]  # h + g(a_L + Δ) − g(a_L) − (h + ε)
        gQ.append(2.0 / (sigma ** 2 * residual.size) * residual.T @ delta + wd[i] * Q[i])  # (1/σ²) mse, + wd Q
    return gW, gb, gQ
