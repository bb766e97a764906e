"""numpy port of one training step of the Bogacz group's predictive-coding library on a tanh mlp.

Follows github.com/Bogacz-Group/PredictiveCoding at 5bf803c3636a39928488941f05539c70ab4df0b1 (the
group of Whittington & Bogacz 2017; its supervised tutorial ``1_supervised_learning_pc.ipynb``
reproduces that paper), with the model ``Sequential(Linear, Tanh, PCLayer, …, Linear, Tanh, PCLayer,
Linear)``, ``optimizer_x_fn=SGD`` at lr γ, ``update_p_at='last'`` and ``loss_fn`` β · Σ_n CE(out_n, y_n):

- ``predictive_coding/pc_layer.py`` lines 17-21: a PCLayer's energy is ½ (μ − x)², its x sampled as
  μ (detached); lines 224-238: x is sampled at the batch's first iteration and returned in place of
  μ; lines 275 and 298: the energy is summed over batch and units;
- ``predictive_coding/pc_trainer.py`` lines 38-39: x is updated at every iteration, the
  parameters at the last; lines 710-916 (``train_on_batch``), for t = 0 … T−1: x sampled at
  t = 0 (715-722), the forward pass (729-737), loss + Σ energies (783-839), ``overall.backward()``
  (869), an SGD step on every x (881-884) and, at t = T−1, the parameter step from the gradients
  of that same backward pass (910-916), taken before that x step moved the activities.

The tutorial puts each PCLayer between a Linear and its activation (the paper's x ≈ W f(x_prev) + b);
``pc_layer.py`` lines 11-12 let it go anywhere, and after the activation it is ngf's pc
(docs/rules.md#pc: x̂^l ≈ f(W x̂^{l-1} + b)). Autograd is done by hand here. Against ngf's ``pc``:
their T is ngf's ``steps`` + 1 (their last iteration's x step comes after the parameter gradients),
and ngf's updates, ∂F/∂θ / β averaged over the batch, are 1 / (β · batch) × their summed gradients.
"""

from __future__ import annotations

import numpy as np


def softmax(a: np.ndarray) -> np.ndarray:
    """Row-wise softmax (inside the cross-entropy)."""
    p = np.exp(a - a.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def pc_step(W: list, b: list, x: np.ndarray, y: np.ndarray, T: int, gamma: float, beta: float):
    """The parameter gradients ([∂W_l], [∂b_l]) of ``train_on_batch``'s last iteration (W as [in, out])."""
    top = len(W) - 1
    xs = []
    for l in range(top):  # t = 0: each PCLayer samples x = μ of the forward pass
        xs.append(np.tanh((x if l == 0 else xs[-1]) @ W[l] + b[l]))
    for t in range(T):
        inputs = [x] + xs  # what each Linear reads: the input, then the PCLayers' x
        mus = [np.tanh(inputs[l] @ W[l] + b[l]) for l in range(top)]  # μ_l, the PCLayer's input
        out = inputs[top] @ W[top] + b[top]
        # ∂overall/∂(pre-activation): −(x − μ)(1 − μ²) for a hidden Linear, β(softmax − onehot) on top
        pre = [-(xs[l] - mus[l]) * (1.0 - mus[l] ** 2) for l in range(top)]
        pre.append(beta * (softmax(out) - np.eye(out.shape[1])[y]))
        if t == T - 1:  # update_p_at='last': the gradients of this backward pass
            return [inputs[l].T @ pre[l] for l in range(top + 1)], [pre[l].sum(0) for l in range(top + 1)]
        # ∂overall/∂x_l = (x_l − μ_l) + what the next Linear sends back; SGD step on every x
        xs = [xs[l] - gamma * ((xs[l] - mus[l]) + pre[l + 1] @ W[l + 1].T) for l in range(top)]
    raise ValueError("T must be at least 1")
