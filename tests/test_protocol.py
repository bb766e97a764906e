"""Protocol options (issue 18): losses, weight decay, momentum, multistep, epochs-scale, val split, padding, zero init.

Equation-level checks on tiny networks, and a few runs on the 6×6 ``tiny`` data (seconds each).
"""

import dataclasses
import json
import tomllib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import ngf
from conftest import make_tiny
from ngf.cli import build_parser, main
from ngf.cli.options import config_from_args
from ngf.core.init import initialise
from ngf.core.losses import LOSSES
from ngf.core.network import Network
from ngf.experiments.plan import parse_grid, plan
from ngf.host.registry import load_registry
from ngf.models import mlp
from ngf.plugins.bp import bp
from ngf.plugins.dfa import dfa
from ngf.plugins.fa import fa
from ngf.plugins.kp import kp
from ngf.plugins.lra import lra
from ngf.runs.config import RunConfig, make_optimizer
from ngf.runs.protocol import best_epoch, hold_out, pad_images

TINY = ["--plugin", "ngf_tiny_data", "--dataset", "tiny"]
SMALL = {"model_opts": {"widths": (8,)}, "batch_size": 16}


def _net(loss="ce"):
    model = mlp(input_shape=(3,), n_classes=4, rngs=nnx.Rngs(0), widths=(5,), activation="tanh")
    net, params = Network.from_model(model, (3,))
    return dataclasses.replace(net, loss=LOSSES[loss]), params


def _batch():
    x = jnp.array([[0.5, -1.0, 2.0], [1.5, 0.2, -0.3], [-0.7, 0.9, 0.1]], jnp.float32)
    return x, jnp.array([1, 0, 3])


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_each_loss_error_is_the_gradient_of_its_per_example_loss(name):
    loss = LOSSES[name]
    h = jnp.array([[0.3, -1.2, 2.0, 0.1], [1.0, 0.5, -0.4, 0.0]])
    y = jnp.array([2, 0])
    autodiff = jax.grad(lambda v: jnp.sum(loss.per_example(v, y)))(h)
    np.testing.assert_allclose(loss.error(h, y), autodiff, rtol=1e-5, atol=1e-6)
    t = jax.nn.one_hot(y, 4)
    by_hand = {"ce": -jnp.sum(t * jax.nn.log_softmax(h), -1), "mse": 0.5 * jnp.sum((h - t) ** 2, -1),
               "bce": -jnp.sum(t * jnp.log(jax.nn.sigmoid(h)) + (1 - t) * jnp.log(1 - jax.nn.sigmoid(h)), -1)}
    np.testing.assert_allclose(loss.per_example(h, y), by_hand[name], rtol=1e-5)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_bp_update_is_the_autodiff_gradient_of_the_mean_loss(name):
    net, params = _net(name)
    x, y = _batch()
    rule = bp()
    _, trace = net.forward(params, x)
    deltas, _ = rule.compute_targets(net, params, trace, y, ())
    updates, _ = rule.local_update(net, params, trace, deltas, ())
    grad = jax.grad(lambda p: jnp.mean(LOSSES[name].per_example(net.logits(p, x), y)))(params)
    for got, want in zip(jax.tree.leaves(updates), jax.tree.leaves(grad)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("rule", ["bp", "fa", "dfa"])
@pytest.mark.parametrize("loss", ["mse", "bce"])
def test_mse_and_bce_train(rule, loss):
    summary = ngf.run(rule=rule, dataset=make_tiny(n_train=192), loss=loss, epochs=4, lr=0.02, schedule="constant",
                      **SMALL)
    losses = [r["train_loss"] for r in summary["history"]]
    assert losses[-1] < losses[0], losses
    assert summary["config"]["loss"] == loss


def _updates(optimizer, params, grads):
    state = optimizer.init(params)
    out = []
    for g in grads:
        u, state = optimizer.update(g, state, params)
        out.append(u)
    return out


def test_multistep_multiplies_lr_by_gamma_after_each_milestone():
    config = RunConfig(optimizer="sgd", lr=0.5, epochs=4, schedule="multistep", milestones=(1, 3), gamma=0.1)
    steps = 2  # per epoch: the lr drops at step 2 (epoch 2's first) and at step 6 (epoch 4's first)
    opt = make_optimizer(config, steps)
    ones = jnp.ones(())
    lrs = [-float(u) for u in _updates(opt, jnp.zeros(()), [ones] * 8)]
    np.testing.assert_allclose(lrs, [0.5, 0.5, 0.05, 0.05, 0.05, 0.05, 0.005, 0.005], rtol=1e-5)


def test_coupled_weight_decay_is_l2_before_the_optimiser():
    theta, g = jnp.array([2.0, -1.0]), jnp.array([0.3, 0.4])
    opt = make_optimizer(RunConfig(optimizer="sgd", lr=0.1, schedule="constant", weight_decay=0.01), 1)
    (u,) = _updates(opt, theta, [g])
    np.testing.assert_allclose(u, -0.1 * (g + 0.01 * theta), rtol=1e-6)  # ΔW = −η (g + λθ)
    adam = make_optimizer(RunConfig(optimizer="adam", lr=0.1, schedule="constant", weight_decay=0.01), 1)
    (u,) = _updates(adam, theta, [g])
    np.testing.assert_allclose(u, -0.1 * jnp.sign(g + 0.01 * theta), rtol=1e-4)  # adam's first step: η sign


def test_decoupled_weight_decay_follows_the_lr_schedule():
    theta, g = jnp.array([2.0, -1.0]), jnp.array([0.3, 0.4])
    config = RunConfig(optimizer="sgd", lr=0.1, epochs=2, schedule="cosine", weight_decay=0.01,
                       weight_decay_mode="decoupled")
    lr = optax.cosine_decay_schedule(0.1, 4)
    updates = _updates(make_optimizer(config, 2), theta, [g, g])
    for step, u in enumerate(updates):
        np.testing.assert_allclose(u, -lr(step) * g - lr(step) * 0.01 * theta, rtol=1e-5)  # −η_t g − η_t λ θ
    adamw = make_optimizer(dataclasses.replace(config, optimizer="adamw"), 2)
    want = optax.adamw(lr, weight_decay=0.01)
    np.testing.assert_allclose(_updates(adamw, theta, [g])[0], _updates(want, theta, [g])[0], rtol=1e-6)


def test_momentum_for_sgd_and_rmsprop_and_an_error_for_adam():
    g = jnp.array([1.0])
    opt = make_optimizer(RunConfig(optimizer="sgd", lr=0.1, schedule="constant", momentum=0.5), 1)
    second = _updates(opt, jnp.zeros(1), [g, g])[1]
    np.testing.assert_allclose(second, -0.1 * 1.5 * g, rtol=1e-6)  # v = m v + g: (1 + m) g
    nesterov = make_optimizer(RunConfig(optimizer="momentum", lr=0.1, schedule="constant", momentum=0.5), 1)
    np.testing.assert_allclose(_updates(nesterov, jnp.zeros(1), [g, g])[1], -0.15, rtol=1e-6)  # replaces 0.9
    rms = make_optimizer(RunConfig(optimizer="rmsprop", lr=0.1, schedule="constant", momentum=0.5), 1)
    plain = make_optimizer(RunConfig(optimizer="rmsprop", lr=0.1, schedule="constant"), 1)
    assert not np.allclose(_updates(rms, jnp.zeros(1), [g, g])[1], _updates(plain, jnp.zeros(1), [g, g])[1])
    with pytest.raises(ngf.NgfError, match="sgd, momentum, nesterov, rmsprop, not adam"):
        RunConfig(momentum=0.9).validate()


@pytest.mark.parametrize("options, message", [
    ({"milestones": (2,)}, "milestones apply to --schedule multistep, not cosine"),
    ({"schedule": "multistep"}, "needs --milestones"),
    ({"schedule": "multistep", "milestones": (3, 2)}, "strictly increasing positive"),
    ({"schedule": "multistep", "milestones": (0, 2)}, "strictly increasing positive"),
    ({"schedule": "multistep", "milestones": (9,)}, "past the run's last epoch"),
    ({"schedule": "multistep", "milestones": (2,), "gamma": 0}, "gamma must be a positive"),
    ({"weight_decay": -1.0}, "weight-decay must be a number ≥ 0"),
    ({"weight_decay_mode": "l2"}, "valid weight decay modes: coupled, decoupled"),
    ({"epochs_scale": 0.0}, "epochs-scale must be a positive"),
    ({"loss": "hinge"}, "valid losses: bce, ce, mse"),
    ({"val_split": -1}, "val-split must be a non-negative"),
])
def test_bad_protocol_options_are_refused_before_the_folder(tmp_path, options, message):
    with pytest.raises(ngf.NgfError, match=message):
        ngf.run(dataset=make_tiny(), epochs=5, out=str(tmp_path / "out"), **options)
    assert not (tmp_path / "out").exists()


def test_epochs_scale_scales_epochs_and_milestones_once(tmp_path):
    config = RunConfig(epochs=100, schedule="multistep", milestones=(50, 75, 76), epochs_scale=0.2)
    assert config.run_epochs == 20 and config.run_milestones == (10, 15)  # 15.2 and 15 merge
    assert RunConfig(epochs=3, epochs_scale=0.01).run_epochs == 1
    out = tmp_path / "run"
    argv = ["run", *TINY, "--epochs", "10", "--schedule", "multistep", "--milestones", "5,8", "--epochs-scale",
            "0.2", "--model-opt", "widths=8", "--batch-size", "32", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["epochs_unscaled"] == 10 and len(summary["history"]) == 2
    text = (out / "config.toml").read_text()
    stored = tomllib.loads(text)
    assert stored["epochs"] == 10 and stored["milestones"] == [5, 8] and stored["epochs_scale"] == 0.2
    assert "trains 2 epochs (of 10), milestones 1, 2" in text
    assert main(["run", "--plugin", "ngf_tiny_data", "--resume", str(out), "--quiet"]) == 0  # not scaled again
    assert len(json.loads((out / "summary.json").read_text())["history"]) == 2


def test_val_split_records_val_metrics_and_the_best_epoch(tmp_path):
    data = make_tiny(n_train=160)
    summary = ngf.run(rule="bp", dataset=data, val_split=40, epochs=3, lr=0.02, out=str(tmp_path / "a"), **SMALL)
    history = summary["history"]
    assert all("val_loss" in r and "val_accuracy" in r for r in history)
    best = max(history, key=lambda r: r["val_accuracy"])
    assert summary["best_epoch"] == best["epoch"] and summary["best_test_accuracy"] == best["test_accuracy"]
    assert summary["best_test_loss"] == best["test_loss"] and "test_accuracy" in summary
    ties = [{"epoch": e, "val_accuracy": 0.5, "test_accuracy": e / 10, "test_loss": 1.0} for e in (1, 2)]
    assert best_epoch(ties)["best_epoch"] == 1  # the first on ties
    with pytest.raises(ngf.NgfError, match="leaves no training examples"):
        ngf.run(dataset=data, val_split=160)


def test_the_val_split_depends_on_the_seed_alone():
    data = make_tiny(n_train=50)
    (a, va), (b, vb) = hold_out(data, 10, 3), hold_out(data, 10, 3)
    np.testing.assert_array_equal(va[0], vb[0])
    assert len(a.x_train) == 40 and len(va[0]) == 10
    other = hold_out(data, 10, 4)[1]
    assert not np.array_equal(va[0], other[0])
    rows = {bytes(r) for r in np.asarray(data.x_train).reshape(50, -1)}
    kept = {bytes(r) for r in a.x_train.reshape(40, -1)} | {bytes(r) for r in va[0].reshape(10, -1)}
    assert kept == rows  # a partition of the training examples


@pytest.mark.parametrize("shape", [(5, 4), (5, 4, 3)])
def test_pad_to_centres_the_images(shape):
    data = make_tiny(n_train=4, n_test=2, shape=shape)
    padded = pad_images(data, 8, "tiny")
    assert padded.x_train.shape[1:3] == (8, 8) and padded.x_test.shape[1:3] == (8, 8)
    np.testing.assert_array_equal(padded.x_train[:, 1:6, 2:6], data.x_train)  # (8−5)//2 = 1, (8−4)//2 = 2
    assert padded.x_train.sum() == data.x_train.astype(np.int64).sum()  # zeros around
    with pytest.raises(ngf.NgfError, match="not images of at most 4×4"):
        pad_images(data, 4, "tiny")


def test_pad_to_runs_a_model_on_the_padded_images():
    summary = ngf.run(rule="fa", dataset=make_tiny(), pad_to=10, epochs=1, **SMALL)
    assert summary["status"] == "completed" and summary["config"]["pad_to"] == 10


def test_zero_init_zeroes_forward_weights_and_keeps_feedback_random():
    net, params = _net()
    zero = initialise(params, "zeros", 0)
    assert all(not np.any(np.asarray(leaf)) for leaf in jax.tree.leaves(zero))  # weights and biases
    for rule in (fa(), dfa(), kp(), lra()):
        state = rule.init(jax.random.key(0), net, zero)
        feedback = [leaf for leaf in jax.tree.leaves(state) if hasattr(leaf, "shape") and leaf.ndim >= 2]
        assert feedback and all(np.std(np.asarray(b)) > 0 for b in feedback)


def test_rules_that_read_forward_weights_refuse_zero_init(tmp_path):
    pytest.importorskip("ngf_signsym", reason="examples/ngf-signsym is not installed")
    for rule in ("usf", "brsf", "frsf"):
        with pytest.raises(ngf.NgfError, match=f"rule '{rule}' reads the forward weights"):
            ngf.run(rule=rule, dataset=make_tiny(), init="zeros", out=str(tmp_path / rule))
        assert not (tmp_path / rule).exists()
    assert ngf.run(rule="fa", dataset=make_tiny(), init="zeros", epochs=1, **SMALL)["status"] == "completed"


def test_config_files_and_sweep_grids_take_the_protocol_options(tmp_path):
    path = tmp_path / "paper.toml"
    path.write_text('optimizer = "sgd"\nmomentum = 0.9\nweight_decay = 1e-3\nschedule = "multistep"\n'
                    'milestones = [50, 75]\nepochs = 100\nloss = "bce"\npad_to = 32\nval_split = 10\n')
    argv = ["run", "--config", str(path), "--gamma", "0.2"]
    args = build_parser().parse_args(argv)  # args.given: only what was typed overrides the file
    config = config_from_args(args)
    config.validate()
    assert (config.momentum, config.weight_decay, list(config.milestones), config.gamma) == (0.9, 1e-3, [50, 75], 0.2)
    grid = parse_grid(["weight_decay=0,1e-3", "milestones=2;1,3", "loss=mse,bce"])
    runs = plan(RunConfig(epochs=4, schedule="multistep"), ["bp"], ["mnist"], [0], grid, tmp_path, load_registry())
    assert {r.config.weight_decay for r in runs} == {0.0, 1e-3}
    assert {r.config.milestones for r in runs} == {(2,), (1, 3)} and {r.config.loss for r in runs} == {"mse", "bce"}
