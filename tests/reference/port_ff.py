"""A numpy port of one Forward-Forward training step of loeweX/Forward-Forward (PyTorch), the public port
that ngf's ``ff`` follows where Hinton's paper is silent (Hinton's own code is Matlab and not on GitHub;
it was not read). Repository github.com/loeweX/Forward-Forward at da516f094c70a4a92042fbbc7ab33303aa7dbfd9:

- ``src/ff_model.py`` 28–31 the running means at 0.5; 57–58 ``_layer_norm`` z / (√mean z² + 1e-8);
  60–71 peer normalisation (running mean of the positive half, momentum 0.9, mean_j (m̄ − m_j)²);
  73–84 ``_calc_ff_loss`` (BCE-with-logits of Σ z² − units, mean over the 2B examples); 86–121
  ``forward`` (positive and negative data in one batch, input normalised, each layer's loss + 0.03 ×
  peer, ``z.detach()`` then normalised between layers); 123–158
  ``forward_downstream_classification_model`` (neutral sample, normalised outputs of layers ≥ 1, a
  bias-free linear classifier, cross-entropy); 161–170 ``ReLU_full_grad`` (derivative 1).
- ``src/ff_mnist.py`` 30–52: the label's one-hot in the image's first row (the first C inputs), the
  neutral label 1/C.

Torch's autograd is replaced by the derivatives written out; weights are torch's [out, in]. The port
returns what ``loss.backward()`` leaves in ``.grad`` (the optimiser descends it), so ngf's updates equal
it with factor 1. Their model has no output layer (ngf's model trains one, from the neutral pass):
only the hidden layers and the classifier are compared.
"""

import numpy as np

EPS = 1e-8  # ff_model.py:57


def layer_norm(z):
    """z / (√mean z² + ε) over the last axis (ff_model.py:57–58)."""
    return z / (np.sqrt(np.mean(z ** 2, axis=-1, keepdims=True)) + EPS)


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def embed(x, labels_code):
    """x with its first C inputs replaced by ``labels_code`` [B, C] (ff_mnist.py:35, 47, 51)."""
    x = np.array(x, np.float64)
    x[:, :labels_code.shape[1]] = labels_code
    return x


def ff_layer_grads(z, weight, bias, batch, running_mean, peer, momentum):
    """One layer of ``forward`` (ff_model.py:100–113): (dW, db, its output, the new running mean).

    loss = BCE(Σ a² − units, [1]*B + [0]*B) + peer × mean_j (m̄ − m_j)², a = ReLU(z Wᵀ + b) with
    ReLU's derivative taken as 1 (``ReLU_full_grad``)."""
    a = np.maximum(z @ weight.T + bias, 0.0)                     # layer(z), act_fn (ff_model.py:101–102)
    units, n = a.shape[1], a.shape[0]
    target = np.r_[np.ones(batch), np.zeros(n - batch)]          # posneg_labels (ff_model.py:94–95)
    logits = np.sum(a ** 2, axis=1) - units                      # ff_model.py:74–76
    dh = ((sigmoid(logits) - target) / n)[:, None] * 2 * a       # ∂BCE-mean/∂a, × 1 (ReLU_full_grad)
    new_mean = momentum * running_mean + (1 - momentum) * a[:batch].mean(0)  # ff_model.py:62–68
    if peer > 0:  # ∂ mean_j (m̄ − m_j)²/∂m_j = 2 (m_j − m̄)/J, ∂m/∂a⁺ = (1 − momentum)/B
        dh[:batch] += peer * 2 * (new_mean - new_mean.mean()) / units * (1 - momentum) / batch
    return dh.T @ z, dh.sum(0), a, new_mean


def ff_step(weights, biases, x, labels, wrong, n_classes, classifier, peer=0.03, momentum=0.9):
    """The gradients one ``loss.backward()`` of ``FF_model.forward`` leaves: per hidden layer (dW, db)
    and the classifier's dC [classes, features]. ``wrong``: each example's negative label."""
    batch, eye = len(x), np.eye(n_classes)
    z = np.concatenate([embed(x, eye[labels]), embed(x, eye[wrong])])  # torch.cat (ff_model.py:93)
    z = layer_norm(z)                                                    # ff_model.py:97–98
    grads = []
    for w, b in zip(weights, biases):
        dw, db, a, _ = ff_layer_grads(z, w, b, batch, np.full(w.shape[0], 0.5), peer, momentum)
        grads.append((dw, db))
        z = layer_norm(a)                                   # z.detach(), _layer_norm (ff_model.py:113–115)
    z, features = layer_norm(embed(x, np.full((batch, n_classes), 1.0 / n_classes))), []
    for idx, (w, b) in enumerate(zip(weights, biases)):     # ff_model.py:131–144, no_grad
        z = layer_norm(np.maximum(z @ w.T + b, 0.0))
        if idx >= 1:
            features.append(z)
    features = np.concatenate(features, axis=1)
    out = features @ classifier.T
    p = np.exp(out - out.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)                           # CrossEntropyLoss (ff_model.py:148–150)
    return grads, ((p - eye[labels]) / batch).T @ features
