"""A numpy port of BioTorch's dense layers for fa, usf, brsf, frsf and dfa (no ngf import).

Source: github.com/jsalbert/biotorch, commit 74fad0dd32529e754e4bba8298d4e0fd0a06a886:

- ``biotorch/autograd/fa/linear.py`` lines 10-32 (``LinearGrad``): forward ``input.mm(weight.t()) + bias``;
  backward ``grad_input = grad_output.mm(weight_backward)`` (24), ``grad_weight = grad_output.t().mm(input)``
  (27), ``grad_bias = grad_output.sum(0)`` (30);
- ``biotorch/layers/fa_constructor/linear.py`` lines 40-41, 58-67, 80-111: the feedback ``weight_backward``
  of each mode: fa, Xavier-uniform drawn once (62-63); usf, ``scaling_factor * sign(weight)`` with
  ``scaling_factor = sqrt(2 / (fan_in + fan_out))`` (65, 89-95); brsf, ``|wb| * sign(weight)`` with ``wb``
  Xavier-uniform redrawn at every forward pass (96-103); frsf, ``|weight_backward| * sign(weight)`` with
  ``weight_backward`` drawn once and made positive at init (41, 104-106);
- ``biotorch/layers/dfa/linear.py`` lines 26, 76-87 and ``biotorch/autograd/dfa/linear.py`` lines 9-30:
  each layer's backward hook replaces the gradient sent to its input by
  ``loss_gradient.mm(weight_backward)``, ``weight_backward`` of shape [output_dim, in_features];
- ``biotorch/module/biomodule.py`` lines 32-36: ``loss_gradient = grad(loss, output)``;
- ``biotorch/benchmark/losses.py`` lines 4-6: ``torch.nn.CrossEntropyLoss()``, the batch mean, so the
  gradient at the logits is (softmax(h) − onehot(y)) / N.

What the port returns is each layer's ``.grad`` (weight [out, in], bias [out]) after
``loss.backward()``, which the optimiser descends, as ngf's optimiser descends ngf's update.
"""

from __future__ import annotations

import math

import numpy as np


def _softmax(h):
    p = np.exp(h - h.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def _forward(weights, x, act):
    """Pre-activations h and layer inputs z of the mlp (hidden ``act``, linear output), torch layout."""
    zs, hs = [x], []
    for l, (w, b) in enumerate(weights):
        h = zs[-1] @ w.T + b  # autograd/fa/linear.py:12-14
        hs.append(h)
        zs.append(act(h) if l < len(weights) - 1 else h)
    return zs, hs


def _loss_gradient(logits, labels):
    """∂ mean CE / ∂h^L = (softmax(h) − onehot(y)) / N (torch.nn.CrossEntropyLoss, reduction mean)."""
    return (_softmax(logits) - np.eye(logits.shape[1])[labels]) / logits.shape[0]


def xavier_std(weight) -> float:
    """BioTorch's ``scaling_factor``: sqrt(2 / (fan_in + fan_out)) of a [out, in] weight (fa_constructor 65)."""
    fan_out, fan_in = weight.shape
    return math.sqrt(2.0 / float(fan_in + fan_out))


def usf_backward(weight):
    """usf: ``scaling_factor * sign(weight)`` (fa_constructor/linear.py:89-95)."""
    return xavier_std(weight) * np.sign(weight)


def random_sign_backward(weight, random):
    """brsf and frsf: ``|random| * sign(weight)`` (fa_constructor/linear.py:41, 102, 105)."""
    return np.abs(random) * np.sign(weight)


def fa_grads(weights, backward, x, labels, act, act_grad):
    """One ``loss.backward()`` through BioTorch's ``LinearGrad``: each layer's (weight.grad, bias.grad).

    ``weights``: (weight [out, in], bias [out]) per layer; ``backward``: each layer's
    ``weight_backward`` [out, in] (the first layer's is never used: its input needs no grad).
    ``act_grad(h)`` is the hidden activation's derivative, what autograd applies between layers.
    """
    zs, hs = _forward(weights, x, act)
    g = _loss_gradient(hs[-1], labels)  # grad_output at the logits
    grads = [None] * len(weights)
    for l in range(len(weights) - 1, -1, -1):
        grads[l] = (g.T @ zs[l], g.sum(0))  # grad_weight = grad_output.t().mm(input); grad_bias = sum(0)
        if l:
            g = (g @ backward[l]) * act_grad(hs[l - 1])  # grad_input = grad_output.mm(weight_backward)
    return grads


def dfa_grads(weights, backward, x, labels, act, act_grad):
    """One ``loss.backward()`` through BioTorch's dfa layers: each layer's (weight.grad, bias.grad).

    ``backward[l]`` is layer l's ``weight_backward`` [output_dim, in_features]: its hook sends
    ``loss_gradient.mm(weight_backward)`` to the layer's input (dfa/linear.py:82) in place of
    the true gradient; autograd then applies the activation's derivative below it.
    """
    zs, hs = _forward(weights, x, act)
    loss_gradient = _loss_gradient(hs[-1], labels)  # biomodule.py:33
    grads, g = [None] * len(weights), loss_gradient
    for l in range(len(weights) - 1, -1, -1):
        grads[l] = (g.T @ zs[l], g.sum(0))  # autograd/dfa/linear.py:25, 28
        if l:
            g = (loss_gradient @ backward[l]) * act_grad(hs[l - 1])  # grad_dfa = loss_gradient.mm(weight_backward)
    return grads


def tanh_grad(h):
    """d tanh(h) / dh."""
    return 1.0 - np.tanh(h) ** 2
