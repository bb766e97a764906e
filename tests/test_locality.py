"""The graph of nodes (issue 13): locality on every built-in model, and the rules' walks on a graph.

Locality: a node's update reads no other node's forward weights, checked for every local
rule on every built-in model by ngf.testing.check_locality, the check plugin authors run
(two proofs: changing each node's forward weights with the trace fixed moves no other
node's update, and no node map is differentiated w.r.t. its input with another node's
forward weights). Rules that read forward weights by definition are left out, each for
its named reason; the others are checked as CHECKED_AS says, each for its named reason.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import ngf.testing
from ngf.core.errors import NgfError
from ngf.core.alignment import alignment_angles
from ngf.core.engine import TrainState
from ngf.core.network import Network, atomic_layers, cross_entropy
from ngf.host.registry import load_registry
from ngf.models.conv import Conv, as_images
from ngf.models.graph import Add, Graph, GraphBuilder
from ngf.models.layers import Dense, Sequential
from ngf_refusals import accepted

REGISTRY = load_registry()
#: rules that read forward weights by their definition (named in their docstrings)
NOT_LOCAL = {
    "bp": "the exact gradient reads every weight above",
    "usf": "sign(θ) of the forward weights", "brsf": "sign(θ) of the forward weights",
    "frsf": "sign(θ) of the forward weights",
    "local-search": "evaluates the whole network's loss; no per-node signal",
    "pc": "feedback=symmetric, the paper's form, relaxes through the consumers' forward weights",
    "ep": "the relaxation couples each node to its consumers through their forward weights (symmetric "
          "couplings, the paper's energy)",
}
#: local rules checked with check_locality's exemptions, each for its reason
CHECKED_AS = {
    "dtp": ({"exempt": (-1,)}, "its top hidden target steps down the gradient through the output node's "
                                "weights (Lee et al.)"),
    "pepita": ({"forward_reads": "above"}, "its second forward pass reaches the nodes above k"),
    "pc": ({"forward_reads": "any"}, "node c's prediction error, made with its own θ_c, reaches its parents "
                                     "through B_c: the fixed-trace test cannot tell that from weight transport"),
}
LOCAL_CASES = [(r, {}) for r in sorted(set(REGISTRY.rules) - set(NOT_LOCAL))] + [("pc", {"feedback": "random"})]
SHAPE = (8, 8, 1)
MODELS = {  # every built-in model, small
    "mlp": {"widths": (6, 5)},
    "cnn": {"channels": (3, 4), "widths": (6, 5)},
    "resnet": {"stem": 3, "widths": (3, 4), "blocks": (1, 1)},
}


def build(model_name: str, **opts):
    model = REGISTRY.get("model", model_name).factory(SHAPE, 3, rngs=nnx.Rngs(0), **opts)
    return Network.from_model(model, SHAPE)


def batch(n=5):
    x = jax.random.uniform(jax.random.key(1), (n,) + SHAPE)
    return x, jnp.arange(n) % 3


def update_function(rule, net, trace, y, state):
    """params → the rule's per-node updates, from the fixed trace (one compiled program)."""
    def updates(params):
        signals, after = rule.compute_targets(net, params, trace, y, state)
        return rule.local_update(net, params, trace, signals, after)[0]
    return jax.jit(updates)


def weight_nodes(params) -> list[int]:
    return [l for l, theta in enumerate(params) if jax.tree.leaves(theta)]


@pytest.mark.parametrize("rule_name, model_name, opts", accepted([(r, m, o) for r, o in LOCAL_CASES for m in sorted(MODELS)]),
                         ids=lambda v: v if isinstance(v, str) else "-".join(f"{k}={x}" for k, x in v.items()) or "defaults")
def test_no_node_reads_another_nodes_forward_weights(rule_name, opts, model_name):
    rule = REGISTRY.get("rule", rule_name).factory(**opts)
    how = CHECKED_AS.get(rule_name, ({}, ""))[0]
    ngf.testing.check_locality(rule, model_name, name=rule_name, rank_promotion="raise", **how)


@pytest.mark.parametrize("rule_name", ["bp", "pc"])
def test_the_watch_sees_weight_transport(rule_name):
    """bp and pc's symmetric form do carry signals through forward weights: the watch alone must say so."""
    _, params = ngf.testing.tiny_network("resnet")
    rule = REGISTRY.get("rule", rule_name).factory()
    nodes = weight_nodes(params)[1:]
    with pytest.raises(AssertionError, match=rf"^rule '{rule_name}' fails the locality check: it takes J\^T "
                                             rf"through the forward weights of nodes {re.escape(str(nodes))}"):
        ngf.testing.check_locality(rule, "resnet", name=rule_name, forward_reads="any")


@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_the_same_changes_move_backprop(model_name):
    """The check has teeth: under bp, changing a node above the first moves the nodes below it."""
    bp = REGISTRY.get("rule", "bp").factory()
    with pytest.raises(AssertionError, match=r"^rule 'bp' fails the locality check: changing node \d+'s forward "
                                             r"weights moved the updates of nodes \[0"):
        ngf.testing.check_locality(bp, model_name, name="bp")


class AtomicBlock(nnx.Module):
    """The old style of residual block: two convolutions in one layer, trained by backprop inside."""

    atomic = True

    def __init__(self, channels: int, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(channels, channels, (3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(channels, channels, (3, 3), rngs=rngs)
        self.activation = jax.nn.relu

    def __call__(self, z):
        return z + self.conv2(jax.nn.relu(self.conv1(as_images(z))))


def atomic_model():
    rngs = nnx.Rngs(0)
    return Sequential([Conv(1, 3, 3, jax.nn.relu, rngs=rngs), AtomicBlock(3, rngs=rngs),
                       Dense(8 * 8 * 3, 3, rngs=rngs)])


def test_an_atomic_block_hides_weight_transport():
    """Inside an atomic block, fa's update of conv1 moves with conv2's kernel: what the graph removes."""
    net, params = Network.from_model(atomic_model(), SHAPE)
    x, y = batch()
    _, trace = net.forward(params, x)
    fa = REGISTRY.get("rule", "fa").factory()
    updates = update_function(fa, net, trace, y, fa.init(jax.random.key(0), net, params))
    block = params[1]
    scaled = jax.tree_util.tree_map_with_path(
        lambda path, a: 3 * a + 0.1 if "conv2" in jax.tree_util.keystr(path) else a, block)
    before, after = updates(params)[1], updates((params[0], scaled, params[2]))[1]
    assert not np.allclose(before["conv1"]["kernel"][...], after["conv1"]["kernel"][...])


def test_a_layer_with_two_mixing_maps_is_refused():
    block = AtomicBlock(3, rngs=nnx.Rngs(0))
    block.atomic = False
    model = Sequential([Conv(1, 3, 3, rngs=nnx.Rngs(0)), block, Dense(8 * 8 * 3, 3, rngs=nnx.Rngs(0))])
    with pytest.raises(NgfError, match=r"layer 1 \(AtomicBlock\) holds 2 unit-mixing maps \(conv1, conv2\)"
                                       r".*its own node.*atomic = True"):
        Network.from_model(model, SHAPE)


def test_declared_atomic_layers_are_listed():
    assert atomic_layers(atomic_model()) == ["layer 1 (AtomicBlock)"]
    assert atomic_layers(REGISTRY.get("model", "resnet").factory(SHAPE, 3, rngs=nnx.Rngs(0))) == []


def test_a_plugin_map_declared_as_one_counts_once():
    class TwoInOne(nnx.Module):
        ngf_mixes_units = True  # a low-rank dense map: two matrices, one map

        def __init__(self, rngs):
            self.a, self.b = nnx.Linear(4, 2, rngs=rngs), nnx.Linear(2, 4, rngs=rngs)
            self.activation = jnp.tanh

        def __call__(self, z):
            return self.b(self.a(z))

    model = Sequential([TwoInOne(nnx.Rngs(0)), Dense(4, 3, rngs=nnx.Rngs(0))])
    net, _ = Network.from_model(model, (4,))
    assert net.depth == 2


def tiny_model():
    """x → d0 (tanh) → d1 (identity) → sum{d1, d0} (tanh) → d3: one residual block of dense nodes."""
    rngs = nnx.Rngs(0)
    g = GraphBuilder()
    z = g.add(Dense(4, 3, jnp.tanh, rngs=rngs))
    h = g.add(Dense(3, 3, rngs=rngs), z)
    z = g.add(Add(jnp.tanh), h, z)
    g.add(Dense(3, 2, rngs=rngs), z)
    return g.build()


def test_graph_builder_sums_parents_and_checks_reads():
    rngs = nnx.Rngs(0)
    model = tiny_model()
    net, params = Network.from_model(model, (4,))
    x = jax.random.normal(jax.random.key(0), (2, 4))
    first = model.layers[0]
    z0 = jnp.tanh(first(x))
    expected = model.layers[3](jnp.tanh(model.layers[1](z0) + z0))
    np.testing.assert_allclose(net.logits(params, x), expected, rtol=1e-6)
    assert net.consumers(0) == (1, 2) and net.parents(2) == (1, 0)
    with pytest.raises(NgfError, match="never read"):
        bad = GraphBuilder()
        bad.add(Dense(4, 4, rngs=rngs))
        bad.add(Dense(4, 3, rngs=rngs), bad.input)
        bad.build()
    with pytest.raises(NgfError, match="may read"):
        Graph([Dense(4, 3, rngs=rngs)], [(0,)])  # a node cannot read itself


def test_ngf_models_lists_nodes_and_atomic_or_refused_layers(capsys, monkeypatch):
    from ngf.cli import main
    monkeypatch.setenv("COLUMNS", "300")
    assert main(["--plugin", "ngf_two_maps", "models"]) == 0
    out = capsys.readouterr().out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 3}
    assert "9 nodes" in rows["resnet"] and "5 nodes" in rows["cnn"]
    assert "layer 1 (TwoMaps): trained by backprop inside" in out
    assert "layer 1 (TwoMaps): refused, 2 unit-mixing maps" in out


@pytest.mark.parametrize("head", ["flatten", "global"])
def test_bp_on_resnet_equals_jax_grad_of_the_whole_loss(head):
    net, params = build("resnet", **{**MODELS["resnet"], "head": head, "blocks": (2, 1)})
    x, y = batch()
    bp = REGISTRY.get("rule", "bp").factory()
    updates = update_function(bp, net, net.forward(params, x)[1], y, ())(params)
    grads = jax.grad(lambda p: jnp.mean(cross_entropy(net.logits(p, x), y)))(params)
    for ours, exact in zip(jax.tree.leaves(updates), jax.tree.leaves(grads)):
        np.testing.assert_allclose(ours, exact, rtol=1e-5, atol=1e-5)


def test_alignment_is_reported_per_node_of_a_graph():
    """One angle per node of resnet: none for the weightless sums, 0° under bp elsewhere, not under fa."""
    net, params = build("resnet", **MODELS["resnet"])
    x, y = batch()
    for name in ("bp", "fa"):
        rule = REGISTRY.get("rule", name).factory()
        angles = np.asarray(alignment_angles(net, rule, params, rule.init(jax.random.key(0), net, params), x, y))
        assert angles.shape == (net.depth,) == (9,)
        assert np.isnan(angles[[3, 7]]).all() and not np.isnan(np.delete(angles, [3, 7])).any()
        weighted = np.delete(angles, [3, 7, 8])  # the head's update is exact under every rule here
        assert (np.abs(weighted) < 0.1).all() if name == "bp" else (weighted > 1).all()


def test_update_norms_leave_out_nodes_without_weights():
    from ngf.experiments.norms import update_norms
    net, params = build("resnet", **MODELS["resnet"])
    x = jax.random.randint(jax.random.key(0), (4,) + SHAPE, 0, 256).astype(jnp.uint8)
    rule = REGISTRY.get("rule", "fa").factory()
    state = TrainState(params, (), rule.init(jax.random.key(0), net, params))
    norms, own = update_norms(net, rule, state, x, jnp.arange(4) % 3)
    assert own is None  # fa has no trainable parameters of its own
    assert [i for i, v in enumerate(norms) if v is None] == [3, 7] and all(v > 0 for v in norms if v is not None)


def tiny_graph():
    """The network of ``tiny_model`` and its parameters."""
    return Network.from_model(tiny_model(), (4,))


def kernel(theta):
    return np.asarray(theta["linear"]["kernel"][...])


def test_fa_signals_add_where_a_node_feeds_two_consumers():
    """δ^0 = f'(h^0) ⊙ (J_1^T(B_1, δ^1) + δ^sum): the branch's feedback plus the skip's identity."""
    net, params = tiny_graph()
    x, y = jax.random.normal(jax.random.key(0), (5, 4)), jnp.arange(5) % 2
    _, trace = net.forward(params, x)
    fa = REGISTRY.get("rule", "fa").factory()
    state = fa.init(jax.random.key(0), net, params)
    deltas, _ = fa.compute_targets(net, params, trace, y, state)
    e = np.asarray(jax.nn.softmax(trace[3].pre) - jax.nn.one_hot(y, 2))
    b1, b3 = kernel(state.feedback[1]), kernel(state.feedback[3])
    d_sum = (1 - np.tanh(trace[2].pre) ** 2) * (e @ b3.T)  # through the head's B
    d1 = d_sum  # identity activation, and the sum's map is the identity
    d0 = (1 - np.tanh(trace[0].pre) ** 2) * (d1 @ b1.T + d_sum)
    for got, want in zip(deltas, (d0, d1, d_sum, e)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_dtp_corrections_add_and_the_skip_inverts_by_the_identity():
    """ŷ^sum = z^sum − η̂ · J_3^T(θ_3, e); ŷ^1 = z^1 + (ŷ^sum − z^sum);
    ŷ^0 = z^0 + [g_1(ŷ^1) − g_1(z^1)] + (ŷ^sum − z^sum): the two paths' corrections add."""
    from ngf.plugins.dtp import difference_targets, dtp, inverse
    net, params = tiny_graph()
    x, y = jax.random.normal(jax.random.key(0), (5, 4)), jnp.arange(5) % 2
    _, trace = net.forward(params, x)
    inverses = dtp().init_params(jax.random.key(0), net, params)  # the rule's trainable parameters
    assert [inv is None for inv in inverses] == [True, False, True, True]  # only d1 learns one
    targets = difference_targets(net, params, trace, y, inverses, 0.1)
    e = np.asarray(jax.nn.softmax(trace[3].pre) - jax.nn.one_hot(y, 2))
    top = np.asarray(trace[2].out) - 0.1 * e @ kernel(params[3]).T
    g1 = lambda v: np.asarray(inverse(net, 1, inverses[1], trace, v))
    y1 = np.asarray(trace[1].out) + top - np.asarray(trace[2].out)
    below = np.asarray(trace[0].out) + g1(jnp.asarray(y1)) - g1(trace[1].out) + (top - np.asarray(trace[2].out))
    np.testing.assert_allclose(targets[2], top, rtol=1e-5, atol=1e-6)
    skip = top - np.asarray(trace[2].out)  # the sum's inverse is the identity: ŷ^sum − z^sum
    np.testing.assert_allclose(targets[1], np.asarray(trace[1].out) + skip, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(targets[0], below, rtol=1e-5, atol=1e-5)
