"""The authors' PyTorch protocols (issue 31): layers without bias, dropout with pepita's masks shared by
its two passes, ``--model-opt widths=`` for no hidden layer, and PyTorch's default initialisation."""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from ngf.core.engine import Engine
from ngf.core.errors import NgfError
from ngf.core.init import initialise
from ngf.core.network import Network
from ngf.core.step import TrainState, make_train_step, rule_pass, step_key
from ngf.host.options import bind_options, factory_options
from ngf.host.registry import load_registry
from ngf.models import Dense, Sequential
from ngf.models.cnn import cnn
from ngf.models.mlp import mlp
from ngf.models.resnet import resnet
from ngf.plugins.pepita import pepita
from ngf.testing.subject import tiny_data, tiny_network

REGISTRY = load_registry()
RULES = sorted(REGISTRY.table("rule"))
X, Y = (a[:16] for a in tiny_data()[:2])
THIN = ("mlp", {"widths": (8, 7), "bias": False, "dropout": 0.25})  # no bias, hidden outputs dropped
#: the (rule, model) pairs refused in one line, and what the line says
REFUSED = {("ep", "mlp"): "cannot train with dropout: it never applies node 0's activation",
           ("ff", "mlp"): "cannot train with dropout: it runs node 0 on (32, 8) where the step's dropout mask is (16, 8)",
           ("ff", "cnn"): "the model's first node outputs a feature map",
           ("ff", "mlp-"): "the model has no hidden node"}


def traced_step(name: str, model: str, opts: dict):
    """The parameters after one training step of rule ``name``, traced (shapes only) as the engine jits it."""
    rule = REGISTRY.get("rule", name).factory()._replace(name=name)
    net, params = tiny_network(model, opts)
    engine = Engine(net, rule, optax.adam(1e-2), 16, 96, 1)
    state = jax.eval_shape(engine.fresh, jax.random.key(0), params)
    return jax.eval_shape(make_train_step(net, rule, engine.optimizer, engine.rule_optimizer), state, X, Y)[0].params


@pytest.mark.parametrize("name", RULES)
def test_every_rule_steps_without_bias_with_dropout_and_without_hidden_nodes_or_refuses_in_one_line(name):
    for label, (model, opts) in {"mlp": THIN, "cnn": ("cnn", {"channels": (3,), "widths": (6,), "bias": False}),
                                 "mlp-": ("mlp", {"widths": ()})}.items():
        if (name, label) in REFUSED:
            with pytest.raises(NgfError, match=re.escape(REFUSED[name, label])) as e:
                traced_step(name, model, opts)
            assert "\n" not in str(e.value)
            if label == "mlp":  # refused for its dropout only: bias-free, it steps
                traced_step(name, model, {**opts, "dropout": 0.0})
            continue
        params = traced_step(name, model, opts)
        paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
        assert paths and (label == "mlp-" or not any("bias" in p for p in paths)), paths


def thinned_batch(p: float = 0.25, widths=(8, 7)):
    """A bias-free mlp with dropout ``p``, its parameters, a batch in [0, 1] and the network of step 3."""
    net, params = tiny_network("mlp", {"widths": widths, "bias": False, "dropout": p})
    x = X.astype(jnp.float32) / 255.0
    return net, params, x, net.thinned(params, x, jax.random.fold_in(jax.random.key(7), 3))


def test_dropout_masks_are_inverted_bernoulli_on_hidden_nodes_only_and_evaluation_is_unthinned():
    net, params, x, thin = thinned_batch(0.25, widths=(200, 100))
    assert net.dropouts == (0.25, 0.25, 0.0) and thin.masks[-1] is None
    for mask in thin.masks[:2]:  # m ~ Bernoulli(1 − P) / (1 − P): values 0 and 4/3, three quarters kept
        assert set(np.unique(np.asarray(mask)).tolist()) == {0.0, np.float32(1 / 0.75)}
        assert abs(float(jnp.mean(mask > 0)) - 0.75) < 0.03
    _, trace = thin.forward(params, x)
    np.testing.assert_array_equal(trace[0].out, thin.masks[0] * jax.nn.relu(trace[0].pre))  # z = m ⊙ f(h)
    plain, plain_params = tiny_network("mlp", {"widths": (200, 100), "bias": False})  # the same draws
    np.testing.assert_array_equal(net.logits(params, x), plain.logits(plain_params, x))  # evaluation: no masks
    assert plain.dropouts == () and plain.thinned(plain_params, x, jax.random.key(0)) is plain


def test_masks_are_a_function_of_the_step_key_alike_for_a_stacked_member():
    net, params, x, thin = thinned_batch()
    keys = jax.random.split(jax.random.key(1), 3)
    stacked = jax.vmap(lambda k: net.thinned(params, x, k).masks[:2])(keys)  # a stack's members, vmapped
    for i, key in enumerate(keys):
        lone = net.thinned(params, x, key).masks
        for l in range(2):
            np.testing.assert_array_equal(stacked[l][i], lone[l])
    again = net.thinned(params, x, jax.random.fold_in(jax.random.key(7), 3)).masks[0]
    other = net.thinned(params, x, jax.random.fold_in(jax.random.key(7), 4)).masks[0]
    np.testing.assert_array_equal(again, thin.masks[0])
    assert not np.array_equal(other, thin.masks[0])


def test_pepita_runs_its_second_pass_through_the_first_pass_masks():
    net, params, x, thin = thinned_batch()
    rule = pepita()
    state = rule.init(jax.random.key(0), net, params)
    _, trace = thin.forward(params, x)
    signals, _ = rule.compute_targets(thin, params, trace, Y, state)
    for l in range(2):
        assert 0 < int(jnp.sum(thin.masks[l] == 0)) < thin.masks[l].size
        h_mod = net.pre_activation(l, params[l], signals.inputs[l])  # h'^l, from pass 2's input u'^l
        np.testing.assert_array_equal(signals.inputs[l + 1], thin.masks[l] * jax.nn.relu(h_mod))  # z'^l = m^l ⊙ f(h'^l)
        np.testing.assert_array_equal(signals.deltas[l], trace[l].out - signals.inputs[l + 1])  # δ^l = z^l − z'^l


def test_bp_with_dropout_is_the_gradient_of_the_thinned_network_and_a_step_depends_on_the_state_alone():
    net, params, x, _ = thinned_batch()
    bp = REGISTRY.get("rule", "bp").factory()._replace(name="bp")
    optimizer = optax.sgd(0.1)
    state = TrainState(params, optimizer.init(params), (), (), (), jax.random.key(0), jnp.zeros((), jnp.int32))
    thin = net.thinned(state.params, x, step_key(state))
    updates = rule_pass(thin, bp, state, x, Y)[0].params
    grad = jax.grad(lambda p: jnp.mean(net.loss.per_example(thin.logits(p, x), Y)))(state.params)
    for u, g in zip(jax.tree.leaves(updates), jax.tree.leaves(grad)):
        np.testing.assert_allclose(u, g, rtol=1e-5, atol=1e-7)
    step = jax.jit(make_train_step(net, bp, optimizer))
    one = step(state, X, Y)[0]
    two = step(one, X, Y)[0]
    resumed = one._replace(params=jax.device_get(one.params), opt_state=jax.device_get(one.opt_state),
                           step=int(one.step))  # as a checkpoint gives the state back: the masks follow
    for a, b, c in zip(jax.tree.leaves(two.params), jax.tree.leaves(step(resumed, X, Y)[0].params),
                       jax.tree.leaves(one.params)):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)


@pytest.mark.parametrize("build, fan", [
    (lambda: mlp((10, 10), 200, rngs=nnx.Rngs(0), widths=()), 100),
    (lambda: cnn((2, 2, 20), 2, rngs=nnx.Rngs(0), channels=(200,), widths=(), pool=1), 180)])
def test_torch_init_draws_weights_and_biases_uniform_within_one_over_root_fan_in(build, fan):
    net, params = Network.from_model(build())
    bound = 1 / math.sqrt(fan)  # nn.Linear / nn.Conv2d reset_parameters: kaiming_uniform(a=√5), bias alike
    bias, weight = jax.tree.leaves(params[0])
    assert weight.shape[-2] * math.prod(weight.shape[:-2]) == fan and bias.ndim == 1
    bias, weight = (np.asarray(leaf) for leaf in jax.tree.leaves(initialise(params, "torch", 0)[0]))
    for leaf in (weight, bias):
        assert np.abs(leaf).max() <= bound and np.abs(leaf).max() > 0.9 * bound
    assert abs(weight.std() - bound / math.sqrt(3)) < 0.02 * bound  # U(−a, a) has std a/√3
    assert abs(bias.mean()) < 0.2 * bound and bias.std() > 0.4 * bound
    assert not np.any(jax.tree.leaves(initialise(params, "he", 0)[0])[0])  # other schemes still zero biases


def test_options_bias_dropout_and_an_empty_widths():
    for factory in (mlp, cnn, resnet):
        options = {o.name: o for o in factory_options(factory)}
        assert options["bias"].default is True and options["bias"].help
    for factory in (mlp, cnn):
        assert {o.name: o.default for o in factory_options(factory)}["dropout"] == 0.0
    _, params = Network.from_model(resnet((4, 4, 1), 3, rngs=nnx.Rngs(0), stem=2, widths=(2, 3), bias=False))
    assert not any("bias" in jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0])
    assert bind_options("model", "mlp", mlp, {"widths": "", "bias": "false", "dropout": "0.1"}) == {
        "widths": (), "bias": False, "dropout": 0.1}
    assert len(mlp((4, 4), 3, rngs=nnx.Rngs(0), widths=()).layers) == 1
    net, params = Network.from_model(cnn((6, 6, 1), 3, rngs=nnx.Rngs(0), channels=(2,), widths=(5,), dropout=0.5))
    assert net.dropouts == (0.0, 0.5, 0.0)  # the dense hidden node only
    refused = {"mlp option dropout must be a probability in [0, 1), got 1.0": dict(dropout=1.0),
               "mlp option dropout must be a probability in [0, 1), got -0.1": dict(dropout=-0.1),
               "mlp option dropout must be a probability in [0, 1), got nan": dict(dropout=float("nan")),
               "mlp option bias must be true or false, got 1": dict(bias=1)}
    for message, opts in refused.items():
        with pytest.raises(NgfError, match=re.escape(message)):
            mlp((4, 4), 3, rngs=nnx.Rngs(0), **opts)
    with pytest.raises(NgfError, match="model option bias expects true or false, got 'maybe'"):
        bind_options("model", "mlp", mlp, {"bias": "maybe"})
    output = Dense(4, 3, rngs=nnx.Rngs(0))
    output.dropout = 0.5
    with pytest.raises(NgfError, match="layer 0, the output node, has dropout 0.5: only hidden nodes may"):
        Network.from_model(Sequential([output]))
