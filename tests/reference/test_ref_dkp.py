"""dkp against Webster, Choi & Ahn's DKP code, one step in float64, dense and conv (docs/rules.md#authors-code).

Authors' code: github.com/webstah/dkp-gist, ``utils/gradfunctions.py`` lines 19-33 and 65-96,
``networks/conv.py`` lines 36-65 and ``main.py`` lines 45-46 and 176, ported in ``port_dkp.py``.
Factor 1 for everything: ngf's forward updates are the authors' ``.grad``, and ngf's
``Updates.rule_params`` (∇B_l = mean_n z^l_n ⊗ e_n + λ_B B_l) is the authors' B.grad plus Adam's
coupled ``weight_decay`` term, in ngf's layout: B_l is [size(z^l), classes] where the authors'
is [classes, C, H, W], z^l flattened NHWC against NCHW. Conv weights are HWIO against OIHW, the
first dense weight's rows follow the NHWC flattening. Compared on networks where the two agree:
relu, no batch normalisation (the authors' conv net has it), no pooling between a hook and the
next layer (ngf's B sits after a consumer's pooling, the authors' before it: docs/rules.md#dkp).
"""

import jax
import numpy as np
from flax import nnx

from ngf.core.network import Network
from ngf.core.rule import call
from ngf.models.cnn import cnn
from ngf.plugins.dkp import dkp
from ngf_tiny_mlp import run_owned_rule
from port_dkp import dkp_grads
from ref_dense import dense_net, flat, from_torch, sample, torch_weights
from reference_kit import as_float64, assert_flip_detected, assert_same_step, float64

FACTOR = 1.0  # ngf's updates and ∇B = the authors' grads (+ λ_B·B), in ngf's layout
DECAY = 1e-6  # λ_B, the authors' Adam weight_decay


def test_dkp_dense_step_equals_authors():
    with float64():
        net, params = dense_net("relu", "ce")
        x, y = sample()
        _, updates, owned = run_owned_rule(dkp(decay=DECAY), net, params, x, y)
        layers = [("fc", w, b) for w, b in torch_weights(params)]
        backward = [np.asarray(b).T for b in owned]  # [classes, size(z^l)]
        grads, b_grads = dkp_grads(layers, backward, np.asarray(x), np.asarray(y), DECAY)
        ngf, ngf_b = flat(updates.params), [np.asarray(b) for b in updates.rule_params]
    assert_same_step(ngf, from_torch(grads), FACTOR)
    assert_same_step(ngf_b, [g.T for g in b_grads], FACTOR)
    assert_flip_detected(ngf, from_torch(grads), FACTOR, leaf=0)
    assert_flip_detected(ngf_b, [g.T for g in b_grads], FACTOR, leaf=1)


def conv_step(rule, net, params, x, y):
    """One jitted dkp step (``Updates``) and its B, drawn from the float64 parameters; the port gets the same values."""
    owned = as_float64(rule.init_params(jax.random.key(3), net, params))

    @jax.jit
    def step(params, owned):
        _, trace = net.forward(params, x)
        state, extras = rule.init(jax.random.key(3), net, params), {"rule_params": owned}
        signals, state = call(rule.compute_targets, net, params, trace, y, state, extras=extras)
        return call(rule.local_update, net, params, trace, signals, state, extras=extras)[0]

    return step(params, owned), owned


def nchw(a):
    """An NHWC map (or one example's HWC) with channels moved before height and width."""
    return np.moveaxis(np.asarray(a), -1, -3)


def to_torch(a, hwc):
    """An ngf matrix [size, k] whose rows flatten an H×W×C map NHWC → torch's [k, C, H, W]."""
    return nchw(np.asarray(a).T.reshape(-1, *hwc))


def to_ngf(a):
    """The inverse of ``to_torch``: [k, C, H, W] (or [k, C·H·W] given as such) → [H·W·C, k]."""
    return np.moveaxis(a, 1, -1).reshape(a.shape[0], -1).T


CONV_NET = ("conv", "conv", "linear", "linear")


def test_dkp_conv_step_equals_authors():
    """conv 3×3 (2 maps) → conv 3×3 (3 maps) → dense 8 → dense 3 on 7×7 images, relu, no pooling.

    Its parameters have the shapes of tests/test_conv_rules.py's cnn, so their initialisation compiles once."""
    with float64():
        model = cnn((7, 7, 1), 3, rngs=nnx.Rngs(0), channels=(2, 3), widths=(8,), activation="relu",
                    pool=1, padding=("valid",))
        net, params = Network.from_model(model, (7, 7, 1))
        params = as_float64(params)
        x = np.random.default_rng(1).normal(size=(8, 7, 7, 1))
        y = np.array([0, 1, 2, 0, 1, 2, 0, 1])
        updates, owned = conv_step(dkp(decay=DECAY), net, params, x, y)
        hwc = [t.out.shape[1:] for t in net.trace_shapes(params)[:-1]]  # z^l's (H, W, C), or (units,)
        (k1, b1), (k2, b2), (k3, b3), (k4, b4) = ((np.asarray(p[k]["kernel"]), np.asarray(p[k]["bias"]))
                                                  for p, k in zip(params, CONV_NET))
        layers = [("conv", k1.transpose(3, 2, 0, 1), b1), ("conv", k2.transpose(3, 2, 0, 1), b2),
                  ("fc", to_torch(k3, hwc[1]).reshape(k3.shape[1], -1), b3), ("fc", k4.T, b4)]  # HWIO → OIHW; NCHW rows
        backward = [to_torch(b, s) if len(s) == 3 else np.asarray(b).T for b, s in zip(owned, hwc)]
        (g1, g2, g3, g4), b_grads = dkp_grads(layers, backward, nchw(x), y, DECAY)
        port = [g1[0].transpose(2, 3, 1, 0), g1[1], g2[0].transpose(2, 3, 1, 0), g2[1],
                to_ngf(g3[0].reshape(-1, *nchw(np.zeros(hwc[1])).shape)), g3[1], g4[0].T, g4[1]]
        port_b = [to_ngf(g) for g in b_grads]
        ngf = [np.asarray(p[k][n]) for p, k in zip(updates.params, CONV_NET) for n in ("kernel", "bias")]
        ngf_b = [np.asarray(b) for b in updates.rule_params]
    assert_same_step(ngf, port, FACTOR)
    assert_same_step(ngf_b, port_b, FACTOR)
    assert_flip_detected(ngf, port, FACTOR, leaf=0)  # the first convolution's kernel
    assert_flip_detected(ngf_b, port_b, FACTOR, leaf=0)  # the first convolution's B
