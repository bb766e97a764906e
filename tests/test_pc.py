"""pc (predictive coding, Whittington & Bogacz 2017; docs/rules.md#pc): the relaxation by hand, its
limit (bp), where random feedback reads weights, its options, and one compiled loop on every model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ngf.core.alignment import angle_degrees
from ngf.core.errors import NgfError
from ngf.core.network import Network
from ngf.core.rule import node_updates
from ngf.host.registry import load_registry
from ngf.models.graph import Add, GraphBuilder
from ngf.models.layers import Dense, Sequential
from ngf.plugins.bp import bp
from ngf.plugins.pc import energy, energy_gradient, node_inputs, pc, prediction_errors
from ngf_tiny_mlp import assert_updates, batch, kernel, numpy_forward, output_error, run_rule, tiny_network

REGISTRY = load_registry()
SHAPE = (8, 8, 1)
SMALL = {  # the built-in models, small (as in tests/test_locality.py)
    "mlp": {"widths": (6, 5)},
    "cnn": {"channels": (3, 4), "widths": (6, 5)},
    "resnet": {"stem": 3, "widths": (3, 4), "blocks": (1, 1)},
}


def build(model_name: str, **opts):
    model = REGISTRY.get("model", model_name).factory(SHAPE, 3, rngs=nnx.Rngs(0), **opts)
    return Network.from_model(model, SHAPE)


def images(n=16):
    return jax.random.uniform(jax.random.key(1), (n,) + SHAPE)


def update_function(rule, net, x, y, state):
    """params → the rule's per-node updates for one batch (one compiled program)."""
    @jax.jit
    def run(params):
        _, trace = net.forward(params, x)
        signals, after = rule.compute_targets(net, params, trace, y, state)
        return node_updates(rule.local_update(net, params, trace, signals, after)[0])

    return run


def updates_of(rule, net, params, x, y, state=None):
    """The rule's per-node updates for one batch."""
    if state is None:  # one compiled program for the random feedback weights too
        state = jax.jit(lambda key, p: rule.init(key, net, p))(jax.random.key(0), params)
    return update_function(rule, net, x, y, state)(params)


def weight_nodes(params) -> list[int]:
    return [l for l, theta in enumerate(params) if jax.tree.leaves(theta)]


# (1) the equations, by hand --------------------------------------------------------------------------

def numpy_relaxation(params, feedback, x, y, steps, rate, beta):
    """T steps x̂ ← x̂ − γ ∂F/∂x̂ on the hidden nodes of the tanh mlp, in numpy (docs/rules.md#pc);
    the final (û, ε, δ ÷ β)."""
    zs, _ = numpy_forward(params, x)
    weights = [kernel(t) for t in params]
    back = [None] + [kernel(b) for b in feedback[1:]]  # J_c^T(W_c, δ) = δ W_cᵀ for a dense node
    acts = [z.copy() for z in zs[1:-1]]  # x̂^l = z^l; the output has no activity

    def signals(acts):
        inputs = [zs[0]] + acts  # û^l = x̂^{l-1}, û^0 = x
        hs = [u @ w + np.asarray(t["linear"]["bias"]) for u, w, t in zip(inputs, weights, params)]
        errors = [a - np.tanh(h) for a, h in zip(acts, hs)]  # ε^l = x̂^l − f(h^l)
        deltas = [-(1 - np.tanh(h) ** 2) * e for h, e in zip(hs, errors)]  # δ^l = −f'(h^l) ⊙ ε^l
        return inputs, errors, deltas + [beta * output_error(hs[-1], y)]  # δ^L = β(softmax − onehot) at x̂

    for _ in range(steps):
        inputs, errors, deltas = signals(acts)
        grads = [e + deltas[l + 1] @ back[l + 1].T for l, e in enumerate(errors)]  # ε^l + J^T(W, δ^{l+1})
        acts = [a - rate * g for a, g in zip(acts, grads)]
    inputs, errors, deltas = signals(acts)
    return inputs, errors, [d / beta for d in deltas]


@pytest.mark.parametrize("feedback", ["symmetric", "random"])
@pytest.mark.parametrize("steps, beta", [(1, 1.0), (2, 1.0), (2, 0.5)])
def test_relaxation_and_updates_match_hand_computation(feedback, steps, beta):
    net, params = tiny_network(widths=(4, 3))
    x, y = batch()
    rule = pc(steps=steps, rate=0.3, beta=beta, feedback=feedback)
    signals, updates, state = run_rule(rule, net, params, x, y)
    back = params if feedback == "symmetric" else state.feedback
    inputs, errors, deltas = numpy_relaxation(params, back, x, y, steps, 0.3, beta)
    for got, want in zip(signals.errors + signals.inputs + signals.deltas, errors + inputs + deltas):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert_updates(updates, inputs, deltas)  # ΔW_l = û^lᵀ (δ^l/β) / batch at the relaxed inputs
    # after T steps the error has reached T nodes below the output, and no further
    reached = [bool(np.abs(d).max() > 0) for d in deltas]
    assert reached == [steps >= 2, True, True]


def residual_graph():
    """x → d0 (tanh) → d1 (identity) → sum{d1, d0} (tanh) → d3: d0 feeds two nodes, the sum has no weights."""
    rngs = nnx.Rngs(0)
    g = GraphBuilder()
    z = g.add(Dense(4, 3, jnp.tanh, rngs=rngs))
    h = g.add(Dense(3, 3, rngs=rngs), z)
    z = g.add(Add(jnp.tanh), h, z)
    g.add(Dense(3, 2, rngs=rngs), z)
    return Network.from_model(g.build(), (4,))


@pytest.mark.parametrize("graph", ["mlp", "residual"])
def test_energy_gradients_are_the_hand_derived_ones(graph):
    """∂F/∂x̂^l = ε^l + Σ_c J_c^T(θ_c, δ^c) and ∂F/∂θ_l = vjp_θ(δ^l) equal autodiff of F (a sum node too)."""
    net, params = tiny_network(widths=(4, 3)) if graph == "mlp" else residual_graph()
    x = jax.random.normal(jax.random.key(1), (4,) + net.input_shape)
    y = jnp.arange(4) % 2

    @jax.jit
    def both_ways(params):
        _, trace = net.forward(params, x)
        keys = jax.random.split(jax.random.key(2), net.depth)
        acts = tuple(t.out + 0.3 * jax.random.normal(k, t.out.shape) for k, t in zip(keys, trace[:-1]))
        inputs = node_inputs(net, x, acts)
        errors, deltas = prediction_errors(net, params, trace, inputs, acts, y, beta=0.5)
        by_hand = (energy_gradient(net, params, inputs, errors, deltas),
                   tuple(net.param_vjp(l, params[l], inputs[l], deltas[l]) for l in range(net.depth)))
        return by_hand, jax.grad(lambda a, p: energy(net, p, x, a, y, beta=0.5), argnums=(0, 1))(acts, params)

    by_hand, by_autodiff = both_ways(params)
    assert jax.tree.structure(by_hand) == jax.tree.structure(by_autodiff)
    for got, want in zip(jax.tree.leaves(by_hand), jax.tree.leaves(by_autodiff)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


# (2) pc reduces to bp --------------------------------------------------------------------------------

def confident(params, factor):
    """The output node's weights × factor: a network sure of its own predictions."""
    return params[:-1] + (jax.tree.map(lambda a: factor * a, params[-1]),)


@pytest.mark.parametrize("model_name, opts, factor", [
    ("mlp", {"widths": (32, 32)}, 30.0),
    ("resnet", SMALL["resnet"], 20.0),
])
def test_pc_reduces_to_bp_for_small_output_errors(model_name, opts, factor):
    """Labels = a confident network's own predictions (output error < 1e-3) and T steps to the
    equilibrium: δ^l = f'(h^l) ⊙ Σ_c J_c^T(θ_c, δ^c), bp's recursion, so every update is within 5° of bp's."""
    net, params = build(model_name, **opts)
    params = confident(params, factor)
    x = images()
    logits = jax.jit(net.logits)(params, x)
    y = jnp.argmax(logits, -1)
    assert float(jnp.abs(jax.nn.softmax(logits) - jax.nn.one_hot(y, 3)).max()) < 1e-3
    want = updates_of(bp(), net, params, x, y)
    got = updates_of(pc(steps=300, rate=0.2, beta=1.0), net, params, x, y)
    angles = [float(angle_degrees(got[l], want[l])) for l in weight_nodes(params)]
    assert max(angles) < 5, angles


def norm(tree) -> float:
    return float(np.sqrt(sum(np.sum(np.square(a)) for a in jax.tree.leaves(tree))))


@pytest.mark.parametrize("model_name, opts", [("mlp", {"widths": (32, 32)}), ("resnet", SMALL["resnet"])])
def test_a_small_output_weight_makes_pc_bp_whatever_the_labels(model_name, opts):
    """Random labels, an untrained network, β = 1e-3: the activities move by O(β·e) only, and the
    updates (÷β) at equilibrium are bp's: within 5°, and as large within 15%."""
    net, params = build(model_name, **opts)
    x = images()
    y = jnp.arange(16) % 3
    want = updates_of(bp(), net, params, x, y)
    got = updates_of(pc(steps=300, rate=0.2, beta=1e-3), net, params, x, y)
    for l in weight_nodes(params):
        assert float(angle_degrees(got[l], want[l])) < 5, l
        assert 0.85 < norm(got[l]) / norm(want[l]) < 1.15, l


# (3) random feedback reads forward weights only forwards ----------------------------------------------

@jax.custom_vjp
def split_dense(w, w_transposed, b, z):
    """h = z W + b, whose vector–Jacobian product w.r.t. z reads a second copy of W: δ W'ᵀ."""
    return z @ w + b[None]


def _split_forward(w, w_transposed, b, z):
    return z @ w + b[None], (w_transposed, z)


def _split_backward(residuals, g):
    w_transposed, z = residuals
    return z.T @ g, jnp.zeros_like(w_transposed), g.sum(0), g @ w_transposed.T


split_dense.defvjp(_split_forward, _split_backward)


class SplitDense(nnx.Module):
    """A dense node with separate forward (``w``) and transpose (``w_transposed``) uses of its weights."""

    def __init__(self, n_in, n_out, activation, key):
        w = jax.random.normal(key, (n_in, n_out)) / np.sqrt(n_in)
        self.w, self.w_transposed, self.b = nnx.Param(w), nnx.Param(w), nnx.Param(jnp.zeros(n_out))
        self.activation = activation

    def __call__(self, z):
        return split_dense(self.w[...], self.w_transposed[...], self.b[...], z)


def split_network():
    keys = jax.random.split(jax.random.key(0), 3)
    layers = [SplitDense(3, 4, jnp.tanh, keys[0]), SplitDense(4, 3, jnp.tanh, keys[1]),
              SplitDense(3, 2, lambda h: h, keys[2])]
    return Network.from_model(Sequential(layers), (3,))


def with_transpose_changed(params, k):
    """Node k's transposed weights moved; its forward weights, and so every prediction, unchanged."""
    theta = jax.tree_util.tree_map_with_path(
        lambda path, a: 3 * a + 0.5 if "w_transposed" in jax.tree_util.keystr(path) else a, params[k])
    return params[:k] + (theta,) + params[k + 1:]


@pytest.mark.parametrize("k", [1, 2])
def test_random_feedback_never_reads_a_forward_weight_backwards(k):
    """Only the transposed use of node k's weights changes: no update may move under feedback=random."""
    net, params = split_network()
    x, y = batch()
    changed = with_transpose_changed(params, k)
    for name, rule in (("random", pc(steps=3, rate=0.3, feedback="random")), ("symmetric", pc(steps=3, rate=0.3)),
                       ("bp", bp())):
        updates = update_function(rule, net, x, y, rule.init(jax.random.key(0), net, params))
        before, after = updates(params), updates(changed)
        moved = [l for l in range(net.depth) if not all(
            np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before[l]), jax.tree.leaves(after[l])))]
        if name == "random":
            assert moved == [], f"node {k}'s transposed weights moved nodes {moved}"
        else:  # the check has teeth: weight transport moves every node below k
            assert set(range(k)) <= set(moved), (name, moved)


def test_random_feedback_uses_the_state_and_differs_from_symmetric():
    """B lives in the state, has θ's shapes, scales with ``scale``; B := θ gives the symmetric rule back."""
    net, params = tiny_network(widths=(4, 3))
    x, y = batch()
    rule = pc(steps=3, rate=0.3, feedback="random")
    state = rule.init(jax.random.key(0), net, params)
    assert state.feedback[0] is None
    for b, theta in zip(state.feedback[1:], params[1:]):
        assert kernel(b).shape == kernel(theta).shape and not np.allclose(kernel(b), kernel(theta))
    random_updates = updates_of(rule, net, params, x, y, state)
    symmetric_updates = updates_of(pc(steps=3, rate=0.3), net, params, x, y)
    assert not np.allclose(kernel(random_updates[0]), kernel(symmetric_updates[0]))
    # B := θ (a copy in the state) is the symmetric rule again: B is what the relaxation reads
    transported = state._replace(feedback=(None,) + tuple(params[1:]))
    for a, b in zip(jax.tree.leaves(updates_of(rule, net, params, x, y, transported)),
                    jax.tree.leaves(symmetric_updates)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    half = pc(steps=3, rate=0.3, feedback="random", scale=0.5, dist="uniform").init(jax.random.key(0), net, params)
    full = pc(steps=3, rate=0.3, feedback="random", scale=1.0, dist="uniform").init(jax.random.key(0), net, params)
    np.testing.assert_allclose(2 * kernel(half.feedback[1]), kernel(full.feedback[1]), rtol=1e-6)
    assert pc().init(jax.random.key(0), net, params).feedback == ()


# (4) options ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("options, message", [
    ({"steps": 0}, "steps must be an integer ≥ 1"),
    ({"steps": 2.5}, "steps must be an integer"),
    ({"steps": True}, "steps must be an integer"),
    ({"rate": 0.0}, "rate must be a finite number > 0 and ≤ 1"),
    ({"rate": 1.5}, "rate"),
    ({"rate": float("nan")}, "rate"),
    ({"feedback": "transposed"}, "valid feedbacks: symmetric, random"),
    ({"scale": 0.0}, "scale"),
    ({"beta": 0.0}, "beta must be a finite number > 0"),
    ({"beta": -1.0}, "beta"),
    ({"dist": "cauchy"}, "valid distributions: normal, uniform"),
])
def test_bad_options_are_refused(options, message):
    with pytest.raises(NgfError, match=message):
        pc(**options)


def test_options_are_listed_and_parsed_from_the_command_line():
    from ngf.host.options import bind_options, factory_options
    options = {o.name: o for o in factory_options(pc)}
    assert list(options) == ["steps", "rate", "beta", "feedback", "scale", "dist"]
    assert all(o.help for o in options.values())
    bound = bind_options("rule", "pc", pc, {"steps": "7", "rate": "0.2", "beta": "1", "feedback": "random"})
    assert bound == {"steps": 7, "rate": 0.2, "beta": 1.0, "feedback": "random"}
    pc(**bound)


# (5) one compiled loop, every model -------------------------------------------------------------------

def test_the_relaxation_is_traced_once_whatever_t():
    net, params = build("resnet", **SMALL["resnet"])
    x, y = images(4), jnp.arange(4) % 3

    def program(steps):
        rule = pc(steps=steps)
        _, trace = net.forward(params, x)
        return jax.make_jaxpr(lambda p: rule.compute_targets(net, p, trace, y, ())[0])(params)

    programs = [program(steps) for steps in (2, 30, 50)]  # unrolled by XLA up to FULL_UNROLL, a loop beyond
    for jaxpr in programs:
        loops = [e for e in jaxpr.jaxpr.eqns if e.primitive.name in ("scan", "while")]
        assert len(loops) == 1 and len(jaxpr.jaxpr.eqns) == len(programs[0].jaxpr.eqns)


@pytest.mark.parametrize("feedback", ["symmetric", "random"])
@pytest.mark.parametrize("model_name", ["cnn", "resnet"])
def test_every_weight_node_gets_a_finite_nonzero_update(model_name, feedback):
    """T = 6 reaches every node of these graphs (at most 5 edges below the output; so does the default T)."""
    net, params = build(model_name, **SMALL[model_name])
    x, y = images(8), jnp.arange(8) % 3
    updates = updates_of(pc(steps=6, feedback=feedback), net, params, x, y)
    assert jax.tree.structure(updates) == jax.tree.structure(params)
    for l in weight_nodes(params):
        leaves = jax.tree.leaves(updates[l])
        assert all(np.all(np.isfinite(u)) for u in leaves)
        assert any(np.abs(u).max() > 0 for u in leaves), f"node {l} got no update"
