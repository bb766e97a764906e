"""The Python API: runs from names and from the user's own rule, model and data."""

import jax
import numpy as np
from flax import nnx

import ngf
from ngf.models import Dense, Sequential


class TwoLayer(nnx.Module):
    """A user's own NNX model: any module with a `layers` list works."""

    def __init__(self, rngs):
        self.layers = nnx.List([Dense(36, 10, jax.nn.relu, rngs=rngs), Dense(10, 3, rngs=rngs)])


def sign_feedback_rule() -> ngf.LearningRule:
    """A user's own rule: feedback through the sign of the forward weights."""

    def compute_targets(net, params, trace, labels, state):
        signs = jax.tree.map(jax.numpy.sign, params)
        return ngf.propagate_errors(net, signs, trace, ngf.output_error(trace[-1].pre, labels)), state

    def local_update(net, params, trace, deltas, state):
        return ngf.updates_from_deltas(net, params, trace, deltas), state

    return ngf.LearningRule(ngf.stateless_init, compute_targets, local_update)


def test_run_with_own_objects(tiny_data, tmp_path):
    summary = ngf.run(rule=sign_feedback_rule(), model=TwoLayer(nnx.Rngs(0)), dataset=tiny_data,
                      epochs=2, batch_size=16, lr=1e-2, out=str(tmp_path / "o"))
    assert summary["rule"] == "custom" and summary["model"] == "TwoLayer" and summary["dataset"] == "custom"
    assert len(summary["epoch_seconds"]) == 2 and 0 <= summary["test_accuracy"] <= 1
    assert (tmp_path / "o" / "summary.json").exists()


def test_run_by_names_with_a_config(tiny_data):
    config = ngf.RunConfig(rule="lra", model="mlp", epochs=1, batch_size=32, rule_opts={"beta": 0.2},
                           model_opts={"widths": (12,)})
    first = ngf.run(config, dataset=tiny_data)
    second = ngf.run(config, dataset=tiny_data)
    assert first["test_loss"] == second["test_loss"]  # same seed, same result
    assert first["config"]["rule_opts"] == {"beta": 0.2}


def test_learning_reduces_loss(tiny_data):
    """On a learnable copy of the data (label: is the first pixel bright), lra lowers the loss."""
    x = tiny_data.x_train
    y = (x[:, 0, 0, 0] > 127).astype(np.int32)
    data = ngf.DataSplits(x, y, x, y, 2)
    summary = ngf.run(rule="lra", dataset=data, epochs=20, batch_size=16, lr=2e-2, schedule="constant",
                      model_opts={"widths": (16,)})
    history = summary["history"]
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    assert history[-1]["train_accuracy"] > 0.9
