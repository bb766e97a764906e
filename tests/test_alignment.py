"""Alignment angles: the angle itself, bp against itself, fa's output layer, and --track-alignment."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ngf.core.alignment import alignment_angles, angle_degrees, loss_gradient
from ngf.runs.api import run
from ngf.plugins.bp import bp
from ngf.plugins.fa import fa
from ngf.plugins.local_search import local_search
from ngf_tiny_mlp import batch, tiny_network


@pytest.mark.parametrize("a, b, degrees", [
    ([1.0, 0.0], [0.0, 2.0], 90.0), ([1.0, 0.0], [3.0, 3.0], 45.0), ([1.0, 0.0], [-1.0, 0.0], 180.0),
    ([2.0, 1.0], [4.0, 2.0], 0.0)])
def test_angle_between_vectors(a, b, degrees):
    np.testing.assert_allclose(angle_degrees(jnp.array(a), jnp.array(b)), degrees, atol=1e-4)


def test_angle_of_pytrees_and_zero_vectors():
    tree = {"w": jnp.array([[1.0, 2.0]]), "b": jnp.array([3.0])}
    np.testing.assert_allclose(angle_degrees(tree, jax.tree.map(lambda a: 5 * a, tree)), 0.0, atol=1e-4)
    assert np.isnan(angle_degrees(tree, jax.tree.map(jnp.zeros_like, tree)))


def angles_for(rule, widths=(4, 3)):
    net, params = tiny_network(widths)
    x, y = batch()
    state = rule.init(jax.random.key(0), net, params)
    return np.asarray(jax.jit(lambda p, s: alignment_angles(net, rule, p, s, x, y))(params, state))


def test_bp_is_aligned_with_itself():
    np.testing.assert_allclose(angles_for(bp()), 0.0, atol=1e-2)


def test_fa_output_layer_is_exact_and_hidden_layers_are_not():
    angles = angles_for(fa())
    np.testing.assert_allclose(angles[-1], 0.0, atol=1e-2)  # δ^L = e for every rule here
    assert np.all((angles[:-1] > 1.0) & (angles[:-1] < 180.0))


def test_a_direct_change_is_compared_as_a_descent_direction():
    # a single tiny step of local search, when accepted, lowers the loss: within 90° of −∇ overall
    net, params = tiny_network()
    x, y = batch()
    rule = local_search(candidates=64, fraction=1.0, sigma=1e-3)
    state = rule.init(jax.random.key(0), net, params)

    @jax.jit
    def overall_angle(params, state):
        _, trace = net.forward(params, x)
        change, _ = rule.compute_targets(net, params, trace, y, state)
        return angle_degrees(jax.tree.map(jnp.negative, change), loss_gradient(net, params, x, y))

    assert float(overall_angle(params, state)) < 90.0


def test_run_tracks_alignment_each_epoch(tiny_data, tmp_path):
    summary = run(rule="fa", model="mlp", dataset=tiny_data, epochs=2, batch_size=16, seed=0,
                  model_opts={"widths": (8,)}, track_alignment=True, out=str(tmp_path / "run"))
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [len(r["alignment_degrees"]) for r in records] == [2, 2]
    assert summary["alignment_degrees"] == records[-1]["alignment_degrees"]
    assert summary["alignment_degrees"][-1] == pytest.approx(0.0, abs=1e-2)


def test_alignment_is_off_by_default(tiny_data):
    summary = run(rule="bp", model="mlp", dataset=tiny_data, epochs=1, batch_size=16,
                  model_opts={"widths": (8,)})
    assert "alignment_degrees" not in summary and "alignment_degrees" not in summary["history"][0]


def test_cli_flag_prints_the_alignment_table(tmp_path, capsys):
    from ngf.cli import main

    argv = ["run", "--plugin", "ngf_tiny_data", "--dataset", "tiny", "--rule", "dfa", "--epochs", "1",
            "--batch-size", "32", "--model-opt", "widths=8", "--quiet", "--track-alignment",
            "--out", str(tmp_path / "cli")]
    assert main(argv) == 0
    assert "alignment with bp" in capsys.readouterr().out
    summary = json.loads((tmp_path / "cli" / "summary.json").read_text())
    assert len(summary["alignment_degrees"]) == 2 and summary["config"]["track_alignment"] is True
