"""Every registered rule, under jit, on the mlp and on resnet's graph of nodes: shapes, finite updates,
one compile."""

import jax
import numpy as np
import pytest
from flax import nnx

from ngf.core.engine import Engine
from ngf.core.network import Network
from ngf.host.registry import load_registry
from ngf.runs.config import OPTIMIZERS

REGISTRY = load_registry()
RULES = sorted(REGISTRY.rules)
MODELS = {"mlp": {"widths": (8, 7)}, "resnet": {"stem": 3, "widths": (3, 4), "blocks": (1, 1)}}
CONTRACT_MODELS = {**MODELS, "cnn": {"channels": (3, 4), "widths": (6,)}}
#: rules whose step is not a per-node update: local search proposes one candidate change, or none
NOT_PER_NODE = {"local-search": "one accepted candidate (or none) per step, over a random subset"}


def build(rule_name, data, batch=16, steps_per_call=1, model_name="mlp"):
    model = REGISTRY.get("model", model_name).factory(data.input_shape, data.n_classes, rngs=nnx.Rngs(0),
                                                       **CONTRACT_MODELS[model_name])
    net, params = Network.from_model(model, data.input_shape)
    rule = REGISTRY.get("rule", rule_name).factory()
    engine = Engine(net, rule, OPTIMIZERS["adam"](1e-2), batch, len(data.x_train), steps_per_call)
    return engine, engine.init(jax.random.key(0), params)


@pytest.mark.parametrize("model_name", sorted(CONTRACT_MODELS))
@pytest.mark.parametrize("rule_name", RULES)
def test_rule_contract(rule_name, model_name, tiny_data):
    """Shapes and finite values, and every weight node really learns: a library elsewhere shipped a
    bug that zeroed every hidden layer's update under all its rules."""
    engine, state = build(rule_name, tiny_data, model_name=model_name)
    net, rule = engine.net, engine.rule
    x = jax.numpy.asarray(tiny_data.x_train[:16], jax.numpy.float32) / 255
    y = jax.numpy.asarray(tiny_data.y_train[:16])

    @jax.jit
    def signals_and_updates(params, rule_state):
        _, trace = net.forward(params, x)
        signals, rule_state = rule.compute_targets(net, params, trace, y, rule_state)
        return rule.local_update(net, params, trace, signals, rule_state)

    updates, _ = signals_and_updates(state.params, state.rule_state)
    assert jax.tree.structure(updates) == jax.tree.structure(state.params)
    for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(state.params)):
        assert u.shape == p.shape and u.dtype == p.dtype
        assert np.all(np.isfinite(u))
    if rule_name in NOT_PER_NODE:
        return
    for l, (theta, update) in enumerate(zip(state.params, updates)):
        if jax.tree.leaves(theta):  # a node with weights (a sum node has none)
            assert any(np.any(u != 0) for u in jax.tree.leaves(update)), f"node {l}'s update is zero"


@pytest.mark.parametrize("rule_name", RULES)
@pytest.mark.parametrize("steps_per_call, model_name", [(4, "mlp")])
def test_no_recompilation_after_first_step(rule_name, steps_per_call, model_name, tiny_data):
    """The scan of several steps and its shorter last call each compile once, and so does evaluation.

    One step per call, on mlp, cnn and resnet, is checked the same way for every rule by
    tests/test_conv_rules.py::test_every_rule_trains_every_model.
    """
    engine, state = build(rule_name, tiny_data, steps_per_call=steps_per_call, model_name=model_name)
    xs, ys = jax.numpy.asarray(tiny_data.x_train), jax.numpy.asarray(tiny_data.y_train)
    for epoch in range(2):
        state, metrics = engine.train_epoch(state, xs, ys, jax.random.key(epoch))
        engine.evaluate(state.params, tiny_data.x_test, tiny_data.y_test)
    assert engine.train_call._cache_size() == 1
    assert engine.eval_call._cache_size() == 1
    if steps_per_call > 1:  # 6 steps in calls of 4: the short last call is one more program, compiled once
        assert engine.tail_call is not None and engine.tail_call._cache_size() == 1
    assert np.isfinite(metrics["train_loss"])

