"""The example third-party package ngf-signsym: its rules by the equations, its dataset, and `ngf run`."""

import csv
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import ngf
from conftest import real_data_available
from ngf.models import Dense, Sequential

signsym = pytest.importorskip("ngf_signsym", reason="examples/ngf-signsym is not installed")


def two_layers():
    """A 5 → 4 (tanh) → 3 network, its Network view, a trace and labels."""
    model = Sequential([Dense(5, 4, jnp.tanh, rngs=nnx.Rngs(0)), Dense(4, 3, rngs=nnx.Rngs(1))])
    net, params = ngf.Network.from_model(model, (5,))
    x = jax.random.normal(jax.random.key(2), (6, 5))
    _, trace = net.forward(params, x)
    return net, params, trace, jnp.array([0, 1, 2, 0, 1, 2])


def hidden_delta(rule, state=None):
    """δ^1 of ``rule`` on the two-layer network, and the rule's next state."""
    net, params, trace, labels = two_layers()
    state = rule.init(jax.random.key(3), net, params) if state is None else state
    deltas, state = rule.compute_targets(net, params, trace, labels, state)
    return deltas[0], state


def test_registered_by_the_entry_point():
    registry = ngf.load_registry()
    for kind, name in (("rule", "usf"), ("rule", "brsf"), ("rule", "frsf"), ("model", "signsym-mlp"),
                       ("dataset", "npz")):
        assert registry.get(kind, name).plugin == "signsym"
    assert registry.plugins["signsym"].version == signsym.__version__


def test_usf_feeds_back_the_scaled_signs():
    """δ^1 = f'(h^1) ⊙ (e · (σ sign W_2)^T), σ the Glorot std of W_2 (4 × 3)."""
    net, params, trace, labels = two_layers()
    w2 = params[1]["linear"]["kernel"][...]
    e = ngf.output_error(trace[-1].pre, labels)
    expected = (1 - jnp.tanh(trace[0].pre) ** 2) * (e @ (ngf.glorot_std((4, 3)) * jnp.sign(w2)).T)
    delta, _ = hidden_delta(signsym.usf())
    np.testing.assert_allclose(delta, expected, rtol=1e-5, atol=1e-7)


def test_feedback_shares_the_forward_signs_only():
    _, params, _, _ = two_layers()
    magnitudes = signsym.rules.random_magnitudes(jax.random.key(0), params, 1.0, "normal")
    feedback = signsym.rules.sign_concordant(params, magnitudes)
    assert feedback[0] is None
    for b, w in zip(jax.tree.leaves(feedback[1]), jax.tree.leaves(params[1])):
        np.testing.assert_array_equal(np.sign(b), np.sign(w))  # a zero bias gets zero feedback
    kernel = np.abs(feedback[1]["linear"]["kernel"][...])
    assert kernel.std() > 0.1 * kernel.mean()  # the magnitudes are random, not the forward ones


def test_frsf_keeps_its_magnitudes_and_brsf_redraws_them():
    first, state = hidden_delta(signsym.frsf())
    again, _ = hidden_delta(signsym.frsf(), state)
    np.testing.assert_array_equal(first, again)
    first, state = hidden_delta(signsym.brsf())
    second, _ = hidden_delta(signsym.brsf(), state)
    assert not np.allclose(first, second)


def write_npz(path, n_classes=3):
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 256, (64, 6, 6), dtype=np.uint8),
             y_train=rng.integers(0, n_classes, 64), x_test=rng.integers(0, 256, (20, 6, 6), dtype=np.uint8),
             y_test=rng.integers(0, n_classes, 20))
    return path


def test_npz_dataset_and_signsym_mlp_train(tmp_path, monkeypatch):
    monkeypatch.setenv("NGF_NPZ_PATH", str(write_npz(tmp_path / "tiny.npz")))
    summary = ngf.run(rule="frsf", model="signsym-mlp", dataset="npz", epochs=1, batch_size=16,
                      model_opts={"widths": "8,8"})
    assert summary["dataset"] == "npz" and np.isfinite(summary["test_loss"])


def test_npz_dataset_names_what_is_wrong(tmp_path, monkeypatch):
    monkeypatch.delenv("NGF_NPZ_PATH", raising=False)
    with pytest.raises(ngf.NgfError, match="NGF_NPZ_PATH"):
        signsym.npz_dataset()
    np.savez(tmp_path / "bad.npz", x_train=np.zeros((2, 3, 3), np.uint8))
    with pytest.raises(ngf.NgfError, match="lacks y_train, x_test, y_test"):
        signsym.npz_dataset(tmp_path / "bad.npz")


def ngf_command() -> list[str]:
    """The installed `ngf` script beside this Python, or the module."""
    script = Path(sys.executable).with_name("ngf")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ngf.cli"]


@pytest.mark.skipif(not real_data_available(), reason="needs real MNIST")
def test_ngf_run_usf_on_mnist(tmp_path):
    log = tmp_path / "usf.csv"
    argv = ["run", "--rule", "usf", "--model", "mlp", "--dataset", "mnist", "--epochs", "1",
            "--batch-size", "500", "--lr", "3e-3", "--model-opt", "widths=64", "--quiet", "--log-csv", str(log)]
    proc = subprocess.run(ngf_command() + argv, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "usf · mlp · mnist" in proc.stdout and "warning" not in proc.stderr
    (row,) = csv.DictReader(log.open())
    assert float(row["test_accuracy"]) > 0.85
