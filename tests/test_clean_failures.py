"""Clean failures everywhere (issue 21, items 4-19; items 1-3 are tests/test_signals.py).

Each error here also has its row in docs/errors.md, which tests/test_errors_doc.py runs;
these tests check what a row cannot: that the run goes on, what the files say, what a
message names, and what the documentation promises.
"""

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import ngf
from conftest import ROOT, make_tiny
from ngf.cli import main
from ngf.cli.ui import epoch_times, results_table
from ngf.core.engine import Engine
from ngf.host.options import factory_options
from ngf.models import Dense, Sequential
from ngf.runs import memory

TINY = ["--plugin", "ngf_tiny_data", "--dataset", "tiny", "--batch-size", "16", "--model-opt", "widths=8",
        "--quiet"]
DOC = (ROOT / "docs" / "plugins.md").read_text()


def _one_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = (captured.out + captured.err).strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    return lines[0]


def _backprop(name=None, **fields) -> ngf.LearningRule:
    """Backprop written as a rule, to be bent out of shape by ``fields``."""
    def compute_targets(net, params, trace, labels, state):
        return ngf.propagate_errors(net, params, trace, ngf.output_error(trace[-1].pre, labels)), state

    def local_update(net, params, trace, deltas, state):
        return ngf.updates_from_deltas(net, params, trace, deltas), state

    parts = {"init": ngf.stateless_init, "compute_targets": compute_targets, "local_update": local_update,
             **fields}
    return ngf.LearningRule(parts["init"], parts["compute_targets"], parts["local_update"], name=name)


def _tiny_run(**options) -> dict:
    widths = {} if "model" in options else {"model_opts": {"widths": (8,)}}
    return ngf.run(**{"dataset": make_tiny(), "epochs": 1, "batch_size": 16, **widths, **options})


# --- 4, 5: plugins that exit or interrupt ---------------------------------------------------------


def test_a_plugin_exiting_at_import_or_registration_is_reported_and_the_rest_work(tmp_path, monkeypatch):
    (tmp_path / "ngf_exits_at_import.py").write_text("import sys\nsys.exit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    class ExitsInRegistration:
        @ngf.hookimpl
        def ngf_register_models(self):
            sys.exit(4)

    registry = ngf.load_registry(["ngf_exits_at_import", ExitsInRegistration()], autoload=False)
    assert "plugin 'ngf_exits_at_import' failed to load: it called sys.exit(3)" in registry.problems
    assert any("failed in ngf_register_models: it called sys.exit(4)" in p for p in registry.problems)
    assert "lra" in registry.rules and "mlp" in registry.models


def test_a_plugin_exiting_in_a_lifecycle_hook_is_reported_once_and_the_run_completes(tmp_path, monkeypatch,
                                                                                      capsys):
    monkeypatch.setenv("NGF_TEST_EXIT_IN", "ngf_epoch_end")
    out = tmp_path / "run"
    status = main(["run", *TINY, "--plugin", "ngf_exiting", "--epochs", "2", "--out", str(out)])
    captured = capsys.readouterr()
    assert status == 0  # not the plugin's 3, which would pose as "diverged"
    assert captured.err.count("plugin 'ngf_exiting' failed in ngf_epoch_end: it called sys.exit(3)") == 1
    assert json.loads((out / "summary.json").read_text())["status"] == "completed"


def test_an_interruption_in_run_end_leaves_the_completed_summary_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NGF_TEST_INTERRUPT_IN", "ngf_run_end")
    out = tmp_path / "run"
    assert main(["run", *TINY, "--plugin", "ngf_exiting", "--epochs", "1", "--out", str(out)]) == 130
    line = _one_line(capsys)
    assert "after the run had completed" in line and "before the run started" not in line
    assert json.loads((out / "summary.json").read_text())["status"] == "completed"


# --- 6: a rule's output, checked once while the step is traced -------------------------------------


@pytest.mark.parametrize("local_update, message", [
    (lambda net, p, t, d, s: (jax.tree.map(lambda a: a[:1], ngf.updates_from_deltas(net, p, t, d)), s),
     "rule 'mine': the update of layer 1's linear.bias has shape (1,); expected (8,), its parameter's"),
    (lambda net, p, t, d, s: ((p[0], {"w": 1.0}), s),
     "rule 'mine': the update of layer 2 is a dict; expected the structure of its parameters, {linear.bias: (3,)"),
    (lambda net, p, t, d, s: None,
     "rule 'mine': local_update must return a pair (updates, state), got a NoneType"),
], ids=["shape", "structure", "not-a-pair"])
def test_a_rule_returning_misshapen_updates_is_named_with_the_layer_and_the_shape(local_update, message):
    with pytest.raises(ngf.NgfError) as caught:
        _tiny_run(rule=_backprop("mine", local_update=local_update))
    assert message in str(caught.value) and "\n" not in str(caught.value)


# --- 7: damaged run files ----------------------------------------------------------------------------


def test_damaged_run_files_are_named_and_a_compare_rerun_redoes_them(tmp_path, capsys):
    out = tmp_path / "cmp"
    compare = ["compare", "--plugin", "ngf_tiny_data", "--datasets", "tiny", "--rules", "bp", "--epochs", "1",
               "--batch-size", "16", "--model-opt", "widths=8", "--quiet", "--out", str(out)]
    assert main(compare) == 0
    run = out / "tiny" / "bp" / "seed0"
    (run / "summary.json").write_text('{"status": "completed", "history": [')  # cut off
    capsys.readouterr()
    assert main(["plot", str(run), "--out", str(tmp_path / "c.png")]) == 2
    assert f"{run}/summary.json is damaged: not JSON" in _one_line(capsys)
    assert main(compare) == 0  # treated as unfinished: resumed from its checkpoint
    assert "bp · tiny · seed 0: resuming" in capsys.readouterr().out
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"


# --- 9: a model too large for the memory -----------------------------------------------------------------


def test_the_memory_estimate_comes_from_shapes_before_anything_is_allocated(monkeypatch):
    make = lambda rngs: Sequential([Dense(36, 1000, rngs=rngs), Dense(1000, 3, rngs=rngs)])
    count, size = memory.parameter_bytes(nnx.eval_shape(lambda: make(nnx.Rngs(0))))
    assert (count, size) == (36 * 1000 + 1000 + 1000 * 3 + 3, 4 * (36 * 1000 + 1000 + 1000 * 3 + 3))
    memory.check_memory(make, 0, "fits")
    monkeypatch.setattr(memory, "available_bytes", lambda: (3 * size - 1, "of memory here"))
    with pytest.raises(ngf.NgfError, match=r"model 'big' has 40,003 parameters \(160 kB\)"):
        memory.check_memory(make, 0, "big")


# --- 11: the Python API's arguments ----------------------------------------------------------------------


def test_numpy_numbers_are_numbers(tmp_path):
    out = tmp_path / "run"
    summary = ngf.run(rule="lra", dataset=make_tiny(), epochs=np.int64(1), batch_size=np.int32(16),
                      lr=np.float32(0.01), seed=np.int64(3), rule_opts={"beta": np.float32(0.25)},
                      model_opts={"widths": (np.int64(8),)}, out=str(out))
    assert summary["epochs"] == 1 and type(summary["config"]["lr"]) is float
    text = (out / "config.toml").read_text()
    assert "beta = 0.25" in text and "widths = [8]" in text and "cannot be written" not in text


# --- 15, 16: what a plugin author needs to know, documented and true -------------------------------------


def test_the_rule_author_notes_are_in_the_docs():
    for claim in ("Signals are any pytree", "`trace[0].inputs` is the batch of images scaled to\n  [0, 1]",
                  "feedback pytree of the first node is `None`", "neither `--lr` nor `--schedule` scales them",
                  "a state built from `params` itself", "`nnx.List([...])`",
                  "a layer without an `activation`\nattribute (or with `None`) has the identity"):
        assert claim in DOC, claim


def _engine(rule, optimizer=None):
    model = Sequential([Dense(36, 8, jax.nn.relu, rngs=nnx.Rngs(0)), Dense(8, 3, rngs=nnx.Rngs(1))])
    net, params = ngf.Network.from_model(model, (6, 6, 1))
    engine = Engine(net, rule, optimizer or optax.adam(1.0), 16, 96, 1)
    data = make_tiny()
    return engine, engine.init(jax.random.key(0), params), jnp.asarray(data.x_train), jnp.asarray(data.y_train)


def test_signals_may_be_any_pytree_and_the_first_inputs_are_the_scaled_batch():
    seen = {}

    def compute_targets(net, params, trace, labels, state):
        seen["shape"] = trace[0].inputs.shape
        deltas = ngf.propagate_errors(net, params, trace, ngf.output_error(trace[-1].pre, labels))
        return {"deltas": deltas, "first": trace[0].inputs}, (jnp.min(trace[0].inputs), jnp.max(trace[0].inputs))

    def local_update(net, params, trace, signals, state):
        return ngf.updates_from_deltas(net, params, trace, signals["deltas"]), state

    rule = ngf.LearningRule(lambda key, net, params: (jnp.zeros(()), jnp.zeros(())), compute_targets, local_update)
    engine, state, x, y = _engine(rule)
    state, _ = engine.train_epoch(state, x, y, jax.random.key(1))
    low, high = state.rule_state
    assert seen["shape"] == (16, 6, 6, 1) and 0 <= float(low) < float(high) <= 1


def test_updates_applied_directly_are_not_scaled_by_the_learning_rate():
    ones = lambda net, p, t, d, s: (jax.tree.map(jnp.ones_like, p), s)
    ends = []
    for lr in (1e-3, 10.0):
        engine, state, x, y = _engine(_backprop(local_update=ones)._replace(applies_directly=True), optax.sgd(lr))
        bias = lambda state: jax.tree.leaves(state.params[0])[0]  # the first layer's bias, (8,)
        assert bias(state).shape == (8,)
        start = float(bias(state)[0])
        state, _ = engine.train_epoch(state, x, y, jax.random.key(1))
        ends.append(float(bias(state)[0]) - start)
    assert ends == [engine.n_steps, engine.n_steps]  # +1 per step, whatever the lr


def test_a_model_with_an_nnx_list_and_a_layer_without_activation_trains():
    class Plain(nnx.Module):  # no `activation`: the identity
        def __init__(self, rngs):
            self.linear = nnx.Linear(8, 3, rngs=rngs)

        def __call__(self, x):
            return self.linear(x)

    class Listed(nnx.Module):
        def __init__(self):
            self.layers = nnx.List([Dense(36, 8, jax.nn.relu, rngs=nnx.Rngs(0)), Plain(nnx.Rngs(1))])

    assert _tiny_run(rule="bp", model=Listed())["status"] == "completed"


# --- 17: names of objects passed to the API --------------------------------------------------------------


def test_objects_passed_to_the_api_are_named_in_the_summary(tmp_path):
    # fields after the first five are optional: a rule built from those five has no name
    assert "name" in ngf.LearningRule._fields[5:] and ngf.LearningRule(*_backprop()[:5]).name is None
    assert _tiny_run(rule=_backprop("sign"))["rule"] == "sign"
    summary = _tiny_run(rule=_backprop(), model=Sequential([Dense(36, 3, rngs=nnx.Rngs(0))]),
                        rule_name="bp-by-hand", model_name="linear", dataset_name="noise", out=str(tmp_path / "r"))
    assert (summary["rule"], summary["model"], summary["dataset"]) == ("bp-by-hand", "linear", "noise")
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["config"]["rule"] == "bp-by-hand"


# --- 19: help and messages -------------------------------------------------------------------------------


def test_option_help_keeps_its_continuation_lines():
    from ngf.models.cnn import cnn

    help_text = {o.name: o.help for o in factory_options(cnn)}["conv_method"]
    assert help_text.endswith("shifts (the same map; ``ngf.models.conv.convolve``).")


def test_an_unknown_distribution_names_the_rule_and_the_option():
    registry = ngf.load_registry(autoload=False)
    with pytest.raises(ngf.NgfError, match=r"^dfa option dist: unknown distribution 'cauchy'; valid"):
        registry.get("rule", "dfa").build(ngf.LearningRule, dist="cauchy")


def test_the_epoch_time_leaves_the_compiling_first_epoch_out():
    assert epoch_times([2.0, 0.1, 0.3]) == "first epoch 2.00 s (compiling), then 0.20 s/epoch"
    assert epoch_times([2.0]) == "first epoch 2.00 s (compiling)"
    summary = {"rule": "bp", "model": "mlp", "dataset": "tiny", "epochs": 3, "epoch_seconds": [2.0, 0.1, 0.3],
               "wall_seconds": 3.0, **{f"{s}_{m}": 0.5 for s in ("train", "test") for m in ("accuracy", "loss")}}
    assert results_table(summary).caption == ("3 epochs, first epoch 2.00 s (compiling), then 0.20 s/epoch, "
                                              "3.0 s in all")
