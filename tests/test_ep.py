"""ep (equilibrium propagation, Scellier & Bengio 2017; Laborieux et al. 2021; docs/rules.md#ep): both
phases and the update by hand on a 3-4-2 network, the nudge options, the EP theorem's limit, the
options' checks and the hard sigmoid."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ngf.core.errors import NgfError
from ngf.core.losses import loss_named
from ngf.core.network import Network
from ngf.models import mlp
from ngf.models.layers import ACTIVATIONS, hard_sigmoid
from ngf.plugins.ep import ep, relax, start_states, rates, input_terms
from ngf_tiny_mlp import batch, bias, kernel


def network(loss="mse", activation="hard_sigmoid"):
    """A 3-4-2 mlp (hard sigmoid hidden units, linear logits) with the run's loss ``loss``."""
    model = mlp(input_shape=(3,), n_classes=2, rngs=nnx.Rngs(0), widths=(4,), activation=activation)
    net, params = Network.from_model(model, (3,))
    return dataclasses.replace(net, loss=loss_named(loss)), params


def stepper(rule, net, x, y):
    """(params, key) → one step of ``rule`` as the engine calls it (no trace): (signals, Updates)."""
    @jax.jit
    def step(params, key):
        state = rule.init(jax.random.key(0), net, params)
        signals, state = rule.compute_targets(net, params, None, y, state, x=x, key=key)
        return signals, rule.local_update(net, params, None, signals, state, x=x)[0]

    return step


def run(rule, net, params, x, y, key=0):
    """One step of ``rule`` with the step key ``key``: (signals, Updates)."""
    return stepper(rule, net, x, y)(params, jax.random.key(key))


def np_relax(params, x, y, s, steps, eps, beta, clip_out):
    """Synchronous projected steps s ← ρ(s − ε ∂F/∂s) on F = ½‖s¹‖² + ½‖s²‖² − s¹·(xW₁+b₁) − s²·(s¹W₂+b₂)
    + β ½‖s² − onehot(y)‖², in numpy; also the last step's per-example change."""
    (w1, b1), (w2, b2) = [(kernel(t), bias(t)) for t in params]
    s1, s2 = s
    t = np.eye(2)[np.asarray(y)]
    change = 0.0
    for _ in range(steps):
        d1 = s1 - (x @ w1 + b1 + s2 @ w2.T)
        d2 = s2 - (s1 @ w2 + b2) + beta * (s2 - t)
        n1 = np.clip(s1 - eps * d1, 0, 1)
        n2 = s2 - eps * d2
        n2 = np.clip(n2, 0, 1) if clip_out else n2
        change = np.sqrt(((n1 - s1) ** 2).sum(1) + ((n2 - s2) ** 2).sum(1)).mean()
        s1, s2 = n1, n2
    return (s1, s2), change


def np_phi_grads(x, s):
    """∂Φ/∂(W₁, b₁, W₂, b₂) summed over the batch, Φ = Σ s¹·(xW₁+b₁) + s²·(s¹W₂+b₂)."""
    s1, s2 = s
    return x.T @ s1, s1.sum(0), s1.T @ s2, s2.sum(0)


def np_updates(params, x, y, t1, t2, eps, beta, nudge, clip_out):
    """The free and nudged phases from zeros and the contrast −(∂Φ(s^a) − ∂Φ(s^b)) / ((β_a − β_b) n), in
    numpy; ``nudge`` one: (a, b) = (β, free), symmetric: (β, −β). Also the free states and last change."""
    zero = (np.zeros((len(x), 4)), np.zeros((len(x), 2)))
    free, change = np_relax(params, x, y, zero, t1, eps, 0.0, clip_out)
    first, _ = np_relax(params, x, y, free, t2, eps, beta, clip_out)
    second, width = (np_relax(params, x, y, free, t2, eps, -beta, clip_out)[0], 2 * beta) \
        if nudge == "symmetric" else (free, beta)
    grads = [-(a - b) / (width * len(x)) for a, b in zip(np_phi_grads(x, first), np_phi_grads(x, second))]
    return grads, free, change


def flat(updates) -> list:
    return [kernel(updates[0]), bias(updates[0]), kernel(updates[1]), bias(updates[1])]


@pytest.mark.parametrize("nudge, clip_out", [("one", False), ("symmetric", True)])
def test_phases_and_update_by_hand(nudge, clip_out):
    net, params = network()
    x, y = batch()
    x = np.asarray(x) / 2.0
    t1, t2, eps, beta = 5, 3, 0.5, 0.7
    rule = ep(t1=t1, t2=t2, beta=beta, step=eps, nudge=nudge, output="hard_sigmoid" if clip_out else "node")
    signals, updates = run(rule, net, params, jnp.asarray(x, jnp.float32), y)
    want, free, change = np_updates(params, x, y, t1, t2, eps, beta, nudge, clip_out)
    for g, w in zip(flat(updates.params), want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(updates.logits, free[1], rtol=1e-5, atol=1e-6)  # prediction: free s^L
    (w1, b1), (w2, b2) = [(kernel(t), bias(t)) for t in params]
    e = 0.5 * (free[0] ** 2).sum() + 0.5 * (free[1] ** 2).sum() - (free[0] * (x @ w1 + b1)).sum() \
        - (free[1] * (free[0] @ w2 + b2)).sum()
    np.testing.assert_allclose(updates.metrics["energy"], e / 3, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(updates.metrics["residual"], change, rtol=1e-4, atol=1e-7)


def test_random_sign_contrasts_plus_or_minus_beta():
    net, params = network()
    x, y = batch()
    x = np.asarray(x)
    plus = np_updates(params, x, y, 4, 3, 0.5, 0.5, "one", False)[0]
    minus = np_updates(params, x, y, 4, 3, 0.5, -0.5, "one", False)[0]
    drawn, step = [], stepper(ep(t1=4, t2=3, nudge="random", output="node"), net, x, y)
    for key in range(8):
        got = flat(step(params, jax.random.key(key))[1].params)
        drawn.append(all(np.allclose(g, w, rtol=1e-4, atol=1e-6) for g, w in zip(got, plus)))
        if not drawn[-1]:
            for g, w in zip(got, minus):
                np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)
    assert set(drawn) == {True, False}  # both signs were drawn, from the step key


def test_symmetric_estimate_is_the_gradient_of_the_equilibrium_cost():
    """EP's theorem (Scellier & Bengio 2017, Theorem 1): as β → 0 at converged phases, the update is
    ∂C(s*(θ))/∂θ; the symmetric difference's bias is O(β²) (Laborieux et al. 2021), the one-sided O(β)."""
    net, params = network(activation="tanh")
    x, y = batch()
    x = x / 4.0
    rule_options = dict(t1=300, t2=300, step=0.5, rho="node", output="node")

    def cost(p):  # C at the free equilibrium, differentiated through the relaxation (BPTT)
        rhos = rates(net, "node", "node")
        start = start_states(net, p, x, rhos, "zeros")
        free, _ = relax(net, p, x, None, start, input_terms(net, p, x), rhos, 300, 0.5, 0.0)
        return jnp.mean(net.loss.per_example(free[-1], y))

    true = jax.jit(jax.grad(cost))(params)
    errors = {}
    for nudge in ("symmetric", "one"):
        got = run(ep(beta=0.01, nudge=nudge, **rule_options), net, params, x, y)[1].params
        a, b = (np.concatenate([np.ravel(g) for g in jax.tree.leaves(u)]) for u in (got, true))
        errors[nudge] = np.linalg.norm(a - b) / np.linalg.norm(b)
    # measured: 1.6e-4 (symmetric) and 1.5e-2 (one); at β = 0.1, 1.6e-2 and 0.14
    assert errors["symmetric"] < 1e-3 and errors["one"] < 3e-2 and errors["symmetric"] < errors["one"] / 10


def test_forward_init_and_lrs():
    net, params = network()
    x, y = batch()
    base = run(ep(t1=1, t2=2, init="forward"), net, params, x, y)[1]
    zeros = run(ep(t1=1, t2=2), net, params, x, y)[1]
    assert not np.allclose(base.logits, zeros.logits)
    # one free step from the feedforward sweep s¹ = ρ(xW₁+b₁), s² = s¹W₂+b₂: s¹ unchanged is ρ(g) there
    s1 = np.clip(np.asarray(x) @ kernel(params[0]) + bias(params[0]), 0, 1)
    s2 = s1 @ kernel(params[1]) + bias(params[1])
    want = s2 - 0.5 * (s2 - (s1 @ kernel(params[1]) + bias(params[1])))
    np.testing.assert_allclose(base.logits, want, rtol=1e-5, atol=1e-6)
    scaled = run(ep(t1=1, t2=2, init="forward", lrs=(2.0, 0.5)), net, params, x, y)[1]
    for l, m in enumerate((2.0, 0.5)):
        np.testing.assert_allclose(kernel(scaled.params[l]), m * kernel(base.params[l]), rtol=1e-5, atol=1e-7)


def test_predict_is_the_free_phase():
    net, params = network()
    x, y = batch()
    rule = ep(t1=6, t2=2)
    logits = run(rule, net, params, x, y)[1].logits
    np.testing.assert_allclose(jax.jit(lambda p: rule.predict(net, p, x, ()))(params), logits, rtol=1e-6)


@pytest.mark.parametrize("options, words", [
    ({"t1": 0}, "ep option t1 must be an integer ≥ 1"),
    ({"t2": 2.5}, "ep option t2 must be an integer ≥ 1"),
    ({"beta": 0}, "ep option beta must be a finite number > 0"),
    ({"step": 1.5}, "ep option step must be a finite number > 0 and ≤ 1"),
    ({"nudge": "two"}, "ep option nudge must be one of symmetric, one, random"),
    ({"init": "random"}, "ep option init must be one of zeros, forward"),
    ({"rho": "tanh"}, "ep option rho must be one of hard_sigmoid, node"),
    ({"output": "softmax"}, "ep option output must be one of hard_sigmoid, node"),
    ({"lrs": (1.0, -1.0)}, "ep option lrs must be a finite number ≥ 0"),
])
def test_bad_options_refused_in_one_line(options, words):
    with pytest.raises(NgfError) as caught:
        ep(**options)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_lrs_of_the_wrong_length_refused_at_init():
    net, params = network()
    with pytest.raises(NgfError, match="lrs lists 3 values; the network has 2 nodes"):
        ep(lrs=(1.0, 1.0, 1.0)).init(jax.random.key(0), net, params)


def test_hard_sigmoid():
    s = jnp.array([-0.5, 0.0, 0.3, 1.0, 1.7])
    np.testing.assert_allclose(hard_sigmoid(s), [0.0, 0.0, 0.3, 1.0, 1.0])
    # derivative 1 on the closed interval (Theano's clip in the authors' code), 0 outside
    np.testing.assert_allclose(jax.vmap(jax.grad(hard_sigmoid))(s), [0.0, 1.0, 1.0, 1.0, 0.0])
    assert ACTIVATIONS["hard_sigmoid"] is hard_sigmoid
    net, _ = network()
    assert net.activations[0] is hard_sigmoid
