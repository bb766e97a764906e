"""Numpy ports of one equilibrium-propagation step from the authors' two codebases.

Scellier & Bengio 2017 (Theano): github.com/bscellier/Towards-a-Biologically-Plausible-Backprop at
cb73f76d997924b6198355e22b50ed7e97cec684, ``model.py`` 8–9 ρ = clip(s, 0, 1); 104–108 E = ½Σρ(s)² −
Σρ(s)·b − Σρ(s_k) W_k ρ(s_k+1); 111–116 C = ‖s_L − y‖² (no ½) and F = E + βC; 133–160 the free
phase and 162–188 the weakly clamped phase, both s ← clip(s − ε ∂F/∂s, 0, 1) for every layer but the input,
all layers at once; 182–188 the update W ← W − α ∂[(mean E(s^β) − mean E(s^0)) / β]/∂W, states held
constant; ``train_model.py`` 59–62 β's sign drawn per batch. Persistent particles start at zero, so a
first step starts its free phase from zeros.

Laborieux et al. 2021 (PyTorch): github.com/Laborieux-Axel/Equilibrium-Propagation at
93660ed6c5b0ec07978b674a69c169ce32e8cd5f, ``model_utils.py`` 24–25 hard_sigmoid (= clip(s, 0, 1));
100–136 ``P_MLP.Phi`` Φ = Σ_k (W_k s_k + b_k)·s_k+1 − β L(s_L, y); 138–166 ``P_MLP.forward``
s ← σ(∂Φ/∂s) for hidden layers and, under cross-entropy, s_L ← ∂Φ/∂s_L; 169–175 ``init_neurons``
zeros; 178–195 ``compute_syn_grads`` p.grad = ∂[(mean Φ(s²) − mean Φ(s¹)) / (β¹ − β²)]/∂p;
927–1013 ``train`` with ``thirdphase`` (958–1013): free phase, +β from it, −β from it, the update from (+β, −β).
``main.py`` 156–159: ``--loss cel`` is CrossEntropyLoss(reduction='none').

Gradients are written out (Theano's and torch's autograd replaced); weights are Scellier's [in, out] and
torch's [out, in]. Both ports return the quantity the optimiser (or ``W − α ·``) descends.
"""

import numpy as np


def clip01(s):
    return np.clip(s, 0.0, 1.0)


def scellier_force(states, weights, biases, onehot, beta):
    """∂F/∂s for every layer but the input (model.py:104–116, ρ' = 1 on [0, 1] as Theano's clip)."""
    rho = [clip01(s) for s in states]
    grads = []
    for k in range(1, len(states)):
        g = rho[k] - biases[k - 1] - rho[k - 1] @ weights[k - 1]          # ½ρ², −ρ·b, −ρ(pre) W ρ(post)
        if k + 1 < len(states):
            g = g - rho[k + 1] @ weights[k].T
        if k == len(states) - 1:
            g = g + beta * 2 * (states[k] - onehot)                        # β ‖s_L − y‖²
        inside = (states[k] >= 0) & (states[k] <= 1)
        grads.append(g * inside)
    return grads


def scellier_relax(states, weights, biases, onehot, beta, steps, eps):
    """``steps`` synchronous steps s ← clip(s − ε ∂F/∂s, 0, 1) (model.py:138–142, 169–173)."""
    for _ in range(steps):
        force = scellier_force(states, weights, biases, onehot, beta)
        states = [states[0]] + [clip01(s - eps * g) for s, g in zip(states[1:], force)]
    return states


def scellier_step(x, labels, weights, biases, n_classes, t1, t2, eps, beta):
    """One mini-batch: the free phase from zeros, the weakly clamped phase at ``beta`` (signed) from
    it, and ∂[(mean E(s^β) − mean E(s^0)) / β]/∂(W, b) (model.py:182–185): per layer (dW, db)."""
    onehot = np.eye(n_classes)[labels]
    start = [x] + [np.zeros((len(x), w.shape[1])) for w in weights]
    free = scellier_relax(start, weights, biases, onehot, 0.0, t1, eps)
    nudged = scellier_relax(free, weights, biases, onehot, beta, t2, eps)

    def energy_grads(s):  # ∂ mean E / ∂W_k = −mean ρ(s_k)ᵀ ρ(s_k+1), ∂/∂b_k = −mean ρ(s_k+1)
        r = [clip01(a) for a in s]
        return [(-r[k].T @ r[k + 1] / len(x), -r[k + 1].mean(0)) for k in range(len(weights))]

    return [((wn - wf) / beta, (bn - bf) / beta)
            for (wn, bn), (wf, bf) in zip(energy_grads(nudged), energy_grads(free))]


def softmax(a):
    p = np.exp(a - a.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def laborieux_forward(x, onehot, neurons, weights, biases, steps, beta):
    """``P_MLP.forward`` with hard_sigmoid and CrossEntropyLoss (model_utils.py:138–166):
    s_k ← σ(∂Φ/∂s_k), s_L ← ∂Φ/∂s_L, all at once, ∂(−βL)/∂s_L = −β (softmax(s_L) − y)."""
    for _ in range(steps):
        layers = [x] + neurons
        grads = []
        for k in range(1, len(layers)):
            g = layers[k - 1] @ weights[k - 1].T + biases[k - 1]
            if k + 1 < len(layers):
                g = g + layers[k + 1] @ weights[k]
            else:
                g = g - beta * (softmax(layers[k]) - onehot)
            grads.append(g)
        neurons = [clip01(g) for g in grads[:-1]] + [grads[-1]]
    return neurons


def laborieux_step(x, labels, weights, biases, n_classes, t1, t2, beta):
    """One mini-batch of ``train`` with --thirdphase (model_utils.py:958–1013): the free phase from zeros
    (β¹ = 0), +β and −β from it, and ``compute_syn_grads`` on (s^{+β}, s^{−β}): per layer (dW, db)."""
    onehot = np.eye(n_classes)[labels]
    zeros = [np.zeros((len(x), w.shape[0])) for w in weights]
    free = laborieux_forward(x, onehot, zeros, weights, biases, t1, 0.0)
    plus = laborieux_forward(x, onehot, free, weights, biases, t2, beta)
    minus = laborieux_forward(x, onehot, free, weights, biases, t2, -beta)

    def phi_grads(s):  # ∂ mean Φ / ∂W_k = mean s_k+1ᵀ s_k (torch's [out, in]), ∂/∂b_k = mean s_k+1
        layers = [x] + s
        return [(layers[k + 1].T @ layers[k] / len(x), layers[k + 1].mean(0)) for k in range(len(weights))]

    # (mean Φ(s^{−β}) − mean Φ(s^{+β})) / (β − (−β))
    return [((wm - wp) / (2 * beta), (bm - bp) / (2 * beta))
            for (wp, bp), (wm, bm) in zip(phi_grads(plus), phi_grads(minus))]
