"""The LearningRule interface of rules that own parameters (issue 29): their parameters follow the run's
optimiser, lr, schedule and weight decay, resume bit for bit, stack, run in workers and in two processes;
their metrics reach every output; ``predict`` is what evaluation reads; the step key is fresh and
reproducible; ``uses_trace=False`` skips the engine's pass; one compile; one-line errors; and a rule
written against the earlier interface runs unchanged.

The rule is ``owned`` (tests/ngf_owned_rule.py): direct Kolen–Pollack with noise from the step's key.
"""

import functools
import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from flax import serialization
from jax.flatten_util import ravel_pytree

import ngf
from conftest import make_tiny
from ngf.cli import main
from ngf.core.engine import Engine, make_train_step, prepare_inputs, rule_pass
from ngf.core.network import Network
from ngf.core.rule import Updates
from ngf.experiments.plots import PANELS, panels
from ngf.experiments.runs import load_results
from ngf.host.registry import load_registry
from ngf.models import mlp
from ngf.runs import checkpoint
from ngf.runs.config import RunConfig, make_optimizer, make_rule_optimizer
from ngf_owned_rule import key_data, owned
from test_checkpoint import Stop, StopAfter
from test_plugins_docs import python_block

TESTS = Path(__file__).resolve().parent
PLUGINS = ["--plugin", "ngf_tiny_data", "--plugin", "ngf_owned_rule"]
COMPARE = ["compare", *PLUGINS, "--rules", "owned", "--datasets", "tiny", "--seeds", "0,1", "--epochs", "2",
           "--batch-size", "32", "--model-opt", "widths=8", "--quiet"]
MEMBERS = ["tiny/owned/seed0", "tiny/owned/seed1"]


@pytest.fixture(scope="module")
def registry():
    return load_registry(["ngf_tiny_data", "ngf_owned_rule"])


def config_of(**options) -> RunConfig:
    return RunConfig(**{"batch_size": 16, "epochs": 2, "lr": 0.1, "optimizer": "sgd", "schedule": "constant",
                        **options})


@functools.cache
def network(input_shape=(6, 6, 1), n_classes=3) -> tuple:
    """A tiny mlp (one hidden layer of 8) for ``tiny_data``, built once: its programs are compiled once."""
    return Network.from_model(mlp(input_shape, n_classes, rngs=nnx.Rngs(0), widths=(8,)), input_shape)


@functools.cache
def rule_with(**options):
    """``owned(**options)``, the same object for the same options (so its programs are compiled once)."""
    return owned(**options)


def engine_for(data, rule, steps_per_call=1, **options):
    """The tiny mlp's engine for ``rule``, with the optimisers a run of ``options`` builds, and its first state."""
    config = config_of(**options)
    net, params = network()
    steps = len(data.x_train) // config.batch_size
    engine = Engine(net, rule, make_optimizer(config, steps), config.batch_size, len(data.x_train), steps_per_call,
                    rule_optimizer=make_rule_optimizer(config, steps, rule))
    return engine, engine.init(jax.random.key(config.seed), jax.tree.map(jnp.array, params))


@functools.cache
def rule_updates(rule):
    """The rule's ``Updates`` for a state and a batch (``rule_pass``), jitted once per rule."""
    net = network()[0]
    return jax.jit(lambda state, x, y: rule_pass(net, rule, state, prepare_inputs(x), y)[0])


@functools.cache
def stepper(rule, **options):
    """The engine's step (``make_train_step``) under the optimisers of a run of ``options``, jitted (nothing donated)."""
    config = config_of(**options)
    steps = len(make_tiny().x_train) // config.batch_size
    step = make_train_step(network()[0], rule, make_optimizer(config, steps), make_rule_optimizer(config, steps, rule))
    return jax.jit(lambda state, x, y: step(state, x, y)[0])


@functools.cache
def first_state():
    """The first state of ``owned()`` under SGD (``Engine.init``): the same parameters and φ for every test."""
    return engine_for(make_tiny(), rule_with())[1]


def batch(data, i, size=16):
    return jnp.asarray(data.x_train[i * size:(i + 1) * size]), jnp.asarray(data.y_train[i * size:(i + 1) * size])


def flat(tree) -> np.ndarray:
    return np.asarray(ravel_pytree(tree)[0])


def started(rule, **options):
    """``first_state`` with the first states of the optimisers of ``rule`` in a run of ``options``."""
    state, config = first_state(), config_of(**options)
    optimizer = make_optimizer(config, 6)
    own = make_rule_optimizer(config, 6, rule) or optimizer
    return state._replace(opt_state=optimizer.init(state.params), rule_opt_state=own.init(state.rule_params))


def one_step(rule, **options):
    """The state after one step of ``rule`` from ``first_state`` on tiny_data's first batch, in a run of ``options``."""
    return stepper(rule, **options)(started(rule, **options), *batch(make_tiny(), 0))


def taken_lr(before, update, after) -> float:
    """The lr η of a step Δ = −η·u (least squares over the leaves)."""
    change, update = flat(after) - flat(before), flat(update)
    return float(-change @ update / (update @ update))


# a, c: the rule's parameters take the run's lr and optimiser


def test_rule_params_follow_lr_and_optimizer(tiny_data):
    before = flat(first_state().rule_params)
    update = flat(rule_updates(rule_with())(first_state(), *batch(tiny_data, 0)).rule_params)
    assert np.abs(update).max() > 1e-3
    after = flat(one_step(rule_with(), lr=0.1).rule_params)
    np.testing.assert_allclose(after, before - 0.1 * update, rtol=1e-6, atol=1e-8)  # SGD: φ ← φ − lr·u
    doubled = flat(one_step(rule_with(), lr=0.2).rule_params)
    np.testing.assert_allclose(doubled - before, 2 * (after - before), rtol=1e-3, atol=1e-8)
    adam = flat(one_step(rule_with(), lr=0.1, optimizer="adam").rule_params)
    by_hand = optax.adam(0.1)  # the first step of optax.adam applied by hand
    change, _ = by_hand.update(update, by_hand.init(before), before)
    np.testing.assert_allclose(adam, before + change, rtol=1e-6, atol=1e-7)
    assert not np.allclose(adam, after, rtol=1e-3)


# b: and its schedule, step by step as the forward parameters do


def test_rule_params_follow_the_schedule_as_the_weights_do(tiny_data):
    rule = rule_with()
    state = started(rule, schedule="cosine")
    step, total = stepper(rule, schedule="cosine"), 12  # 2 epochs of 6 steps
    schedule = optax.cosine_decay_schedule(0.1, total)
    taken = []
    for k in range(total):
        x, y = batch(tiny_data, k % 6)
        updates, after = rule_updates(rule)(state, x, y), step(state, x, y)
        taken.append((taken_lr(state.params, updates.params, after.params),
                      taken_lr(state.rule_params, updates.rule_params, after.rule_params)))
        state = after
    forward, own = np.array(taken).T
    np.testing.assert_allclose(own, forward, rtol=1e-3)
    np.testing.assert_allclose(own, [float(schedule(k)) for k in range(total)], rtol=1e-3)
    assert np.all(np.diff(own) < 0)


# d: params_lr scales their lr; params_decay=False keeps --weight-decay off them


def test_params_lr_scales_and_params_decay_false_excludes_weight_decay(tiny_data):
    config = RunConfig(lr=0.1, optimizer="sgd", schedule="constant", weight_decay=0.5)
    assert make_rule_optimizer(config, 6, owned()) is None  # the run's own optimiser serves
    assert make_rule_optimizer(config, 6, owned(params_lr=0.5)) is not None
    assert make_rule_optimizer(config, 6, ngf.load_registry().get("rule", "bp").factory()) is None
    state, x, y = first_state(), *batch(tiny_data, 0)
    updates = rule_updates(rule_with())(state, x, y)  # the same arithmetic under every params_lr and decay
    before, update = flat(state.rule_params), flat(updates.rule_params)
    after = one_step(rule_with(params_lr=0.5, params_decay=False), weight_decay=0.5)
    np.testing.assert_allclose(flat(after.rule_params), before - 0.05 * update, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(flat(after.params), flat(state.params) - 0.1 * (  # the weights still decay
        flat(updates.params) + 0.5 * flat(state.params)), rtol=1e-5, atol=1e-7)
    decayed = flat(one_step(rule_with(params_lr=0.5), weight_decay=0.5).rule_params)
    np.testing.assert_allclose(decayed, before - 0.05 * (update + 0.5 * before), rtol=1e-6, atol=1e-8)


# e: a resumed run is the uninterrupted one, bit for bit


def checkpoint_leaves(folder: Path) -> list:
    payload = serialization.msgpack_restore((folder / "checkpoint.msgpack").read_bytes())
    return [np.asarray(payload["leaves"][k]) for k in sorted(payload["leaves"])]


def without_seconds(records: list) -> list:
    return [{k: v for k, v in r.items() if "seconds" not in k} for r in records]


def test_a_resumed_run_equals_the_uninterrupted_one_bit_for_bit(tmp_path, registry):
    opts = dict(rule="owned", dataset="tiny", epochs=2, batch_size=32, model_opts={"widths": (8,)},
                registry=registry)  # adam and cosine: the optimiser's state and the step count matter
    whole = ngf.run(out=str(tmp_path / "whole"), **opts)
    with pytest.raises(Stop):
        ngf.run(out=str(tmp_path / "cut"), callbacks=StopAfter(1), **opts)
    resumed = ngf.run(out=str(tmp_path / "cut"), resume=True, **opts)
    assert without_seconds(resumed["history"]) == without_seconds(whole["history"])
    assert resumed["history"][1]["rule_metrics"] != resumed["history"][0]["rule_metrics"]
    ours, theirs = checkpoint_leaves(tmp_path / "cut"), checkpoint_leaves(tmp_path / "whole")
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b)


# k: the step key: fresh each step, the same for the same seed, continued across a checkpoint


def test_the_step_key_is_fresh_reproducible_and_continued_by_a_checkpoint(tiny_data):
    engine, first = engine_for(tiny_data, rule_with())
    step = stepper(rule_with())
    one = step(first, *batch(tiny_data, 0))
    two = step(one, *batch(tiny_data, 1))
    assert int(two.step) == 2
    np.testing.assert_array_equal(one.rule_state, key_data(jax.random.fold_in(first.key, 0)))
    np.testing.assert_array_equal(two.rule_state, key_data(jax.random.fold_in(first.key, 1)))
    assert not np.array_equal(one.rule_state, two.rule_state)

    def fresh(seed):
        return engine.init(jax.random.key(seed), jax.tree.map(jnp.array, network()[1]))

    np.testing.assert_array_equal(key_data(fresh(0).key), key_data(first.key))
    assert not np.array_equal(key_data(fresh(1).key), key_data(first.key))
    data = jnp.asarray(tiny_data.x_train), jnp.asarray(tiny_data.y_train)
    last = key_data(jax.random.fold_in(first.key, 2 * engine.n_steps - 1))
    whole = fresh(0)
    for epoch in range(2):
        whole, _ = engine.train_epoch(whole, *data, jax.random.key(10 + epoch))
    cut, _ = engine.train_epoch(fresh(0), *data, jax.random.key(10))
    cut, epoch, _ = checkpoint.decode(checkpoint.encode(cut, 1, [{}]), fresh(0))
    cut, _ = engine.train_epoch(jax.device_put(cut), *data, jax.random.key(10 + epoch))
    np.testing.assert_array_equal(whole.rule_state, last)
    for a, b in zip(jax.tree.leaves(jax.tree.map(key_data, cut, is_leaf=is_key)),
                    jax.tree.leaves(jax.tree.map(key_data, whole, is_leaf=is_key))):
        np.testing.assert_array_equal(a, b)


def is_key(leaf) -> bool:
    return hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


# f, g: a stack's members are their lone runs; workers give the serial runs' bits


def member_files(folder: Path) -> dict:
    """Each member's records (without seconds) and checkpoint arrays."""
    return {run: (without_seconds([json.loads(line) for line in (folder / run / "metrics.jsonl").read_text()
                                   .splitlines()]), checkpoint_leaves(folder / run)) for run in MEMBERS}


@pytest.fixture(scope="module")
def serial(tmp_path_factory) -> dict:
    """The two runs one after another in a fresh process of one thread (tests/test_workers.py's reference)."""
    out = tmp_path_factory.mktemp("serial") / "cmp"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "ngf.cli", *COMPARE, "--threads", "1", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return member_files(out)


def test_stacked_members_equal_their_lone_runs_rule_params_and_metrics_included(tmp_path, serial):
    assert main([*COMPARE, "--stack", "2", "--out", str(tmp_path / "stacked")]) == 0
    for run, (records, arrays) in member_files(tmp_path / "stacked").items():
        alone, alone_arrays = serial[run]
        assert [r["epoch"] for r in records] == [1, 2]
        for mine, theirs in zip(records, alone):  # tests/test_stacked.py's bound: 1e-4 per epoch
            for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
                assert abs(mine[key] - theirs[key]) <= 1e-4, (run, key, mine, theirs)
            assert abs(mine["rule_metrics"]["b_norm"] - theirs["rule_metrics"]["b_norm"]) <= 1e-4
        assert len(arrays) == len(alone_arrays)
        for a, b in zip(arrays, alone_arrays):  # the rule's parameters, their optimiser state, key, step
            if np.issubdtype(a.dtype, np.floating):
                np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
            else:
                np.testing.assert_array_equal(a, b)


def test_two_workers_give_the_bits_of_the_serial_runs(tmp_path, serial, capsys):
    assert main([*COMPARE, "--workers", "2", "--threads", "1", "--out", str(tmp_path / "workers")]) == 0
    for run, (records, arrays) in member_files(tmp_path / "workers").items():
        assert records == serial[run][0]
        for a, b in zip(arrays, serial[run][1], strict=True):
            np.testing.assert_array_equal(a, b)


# h: two processes through jax.distributed train the one-process run:


# tests/test_distributed.py trains ddtp (Q, a step key, a metric) in two processes against one, and resumes


# i: the rule's metrics reach metrics.jsonl, summary.json, the console line, a logger and ngf plot


def tensorboard_scalars(folder: Path) -> dict:
    """``{tag: {step: value}}`` of the scalars in ``folder``'s event files (tests/test_loggers.py's way)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    events = EventAccumulator(str(folder))
    events.Reload()
    values = {}
    for tag in events.Tags()["tensors"]:
        for event in events.Tensors(tag):
            value = tensor_util.make_ndarray(event.tensor_proto)
            if value.dtype != object:
                values.setdefault(tag, {})[event.step] = float(value)
    return values


def test_rule_metrics_reach_every_output(tmp_path, capsys):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    out = tmp_path / "run"
    assert main(["run", *PLUGINS, "--dataset", "tiny", "--rule", "owned", "--epochs", "2", "--batch-size", "32",
                 "--model-opt", "widths=8", "--log", "tensorboard", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    values = [r["rule_metrics"]["b_norm"] for r in records]
    assert [set(r["rule_metrics"]) for r in records] == [{"b_norm"}] * 2 and values[0] != values[1]
    summary = json.loads((out / "summary.json").read_text())
    assert [h["rule_metrics"] for h in summary["history"]] == [r["rule_metrics"] for r in records]
    lines = [line for line in printed.splitlines() if re.match(r"\s*epoch\s+\d", line)]
    assert len(lines) == 2 and all(f"b_norm {v:.4g}" in line for v, line in zip(values, lines)), printed
    assert tensorboard_scalars(out / "tb")["rule/b_norm"] == pytest.approx({1: values[0], 2: values[1]})
    results = load_results([out])
    assert panels(results) == PANELS + (("rule/b_norm", "b_norm (rule)"),)
    assert main(["plot", str(out), "--out", str(tmp_path / "curves.png")]) == 0
    assert (tmp_path / "curves.png").stat().st_size > 0


# j: evaluation reads the rule's predict


def test_evaluation_reads_the_rules_predict(registry):
    data = make_tiny(n_classes=5, n_test=60)
    summary = ngf.run(rule="owned", rule_opts={"predict_class": 3}, dataset=data, epochs=1, batch_size=32,
                      model_opts={"widths": (8,)}, registry=registry)
    assert summary["test_accuracy"] == pytest.approx(float(np.mean(data.y_test == 3)), abs=1e-7)
    assert 0 < float(np.mean(data.y_test == 3)) < 0.5


# l: uses_trace=False: no forward pass by the engine; the rule's logits give the training metrics


def test_a_rule_with_its_own_passes_skips_the_engines_and_trains(tiny_data, registry, monkeypatch):
    engine, state = engine_for(tiny_data, rule_with(own_passes=True))
    calls = []
    real = Network.forward
    monkeypatch.setattr(Network, "forward", lambda self, *a: calls.append(1) or real(self, *a))
    jax.make_jaxpr(make_train_step(engine.net, engine.rule, engine.optimizer))(state, *batch(tiny_data, 0))
    assert len(calls) == 1  # the rule's own pass (it asserts that it was handed trace=None); none by the engine
    monkeypatch.undo()
    opts = dict(rule="owned", dataset="tiny", epochs=2, batch_size=32, model_opts={"widths": (8,)},
                registry=registry)
    own, traced = (ngf.run(rule_opts={"own_passes": passes}, **opts) for passes in (True, False))
    assert without_seconds(own["history"]) == without_seconds(traced["history"])  # the same arithmetic


# m: one compile


def test_no_recompilation_after_the_first_step(tiny_data):
    engine, state = engine_for(tiny_data, rule_with(), steps_per_call=4)  # 6 steps: calls of 4 and 2
    data = jnp.asarray(tiny_data.x_train), jnp.asarray(tiny_data.y_train)
    for epoch in range(2):
        state, record = engine.train_epoch(state, *data, jax.random.key(epoch))
        engine.evaluate(state, tiny_data.x_test, tiny_data.y_test)
    assert engine.train_call._cache_size() == engine.tail_call._cache_size() == 1
    assert engine.eval_call._cache_size() == 1
    assert np.isfinite(record["train_loss"]) and set(record["rule_metrics"]) == {"b_norm"}


# n: undeclared metrics and misshapen parameter updates are one line naming the rule


@pytest.mark.parametrize("bad, says", [("metrics", r"reported the metrics \['b_norm', 'surprise'\]; it declares "
                                                   r"\['b_norm'\]"),
                                       ("shape", r"has shape \(\d+, 1\); expected \(\d+, 3\)")])
def test_bad_metrics_or_parameter_updates_are_one_line_naming_the_rule(bad, says, registry):
    with pytest.raises(ngf.NgfError) as caught:
        ngf.run(rule="owned", rule_opts={"bad": bad}, dataset="tiny", epochs=1, batch_size=32,
                model_opts={"widths": (8,)}, registry=registry)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("rule 'owned': ") and re.search(says, message), message


# the earlier interface: the docs' rules of yesterday run unchanged


@pytest.mark.parametrize("defines, name", [("def random_sign", "random-sign"), ("def my_kp", "my-kp")])
def test_a_rule_written_for_the_earlier_interface_runs_unchanged(defines, name, tiny_data):
    """A state that keeps and splits its own key (random_sign) or its own feedback (my_kp, apply_changes),
    bare per-node tuples of updates and no new field: a run, and tests/test_contract.py's checks."""
    module = types.ModuleType(f"docs_{name}")
    exec(compile(python_block(defines), "docs/plugins.md", "exec"), module.__dict__)
    registry = ngf.load_registry(extra_plugins=[module], autoload=False)
    rule = registry.get("rule", name).factory()
    assert rule.init_params is None and rule.metrics == () and rule.uses_trace
    summary = ngf.run(rule=name, dataset=tiny_data, epochs=1, batch_size=16, model_opts={"widths": (8,)},
                      registry=registry)
    assert summary["status"] == "completed" and np.isfinite(summary["train_loss"])
    assert "rule_metrics" not in summary["history"][0]
    net, params = network()
    state = rule.init(jax.random.key(0), net, params)

    @jax.jit
    def contract(params, rule_state, x, y):  # tests/test_contract.py's calls: the earlier signatures
        _, trace = net.forward(params, prepare_inputs(x))
        signals, rule_state = rule.compute_targets(net, params, trace, y, rule_state)
        return rule.local_update(net, params, trace, signals, rule_state)[0]

    updates = contract(params, state, *batch(tiny_data, 0))
    assert not isinstance(updates, Updates) and jax.tree.structure(updates) == jax.tree.structure(params)
    for l, (update, theta) in enumerate(zip(updates, params)):
        for u, p in zip(jax.tree.leaves(update), jax.tree.leaves(theta)):
            assert u.shape == p.shape and u.dtype == p.dtype and np.all(np.isfinite(u))
        assert any(np.any(u != 0) for u in jax.tree.leaves(update)), f"node {l}'s update is zero"
