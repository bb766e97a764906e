"""The engine: masked partial calls, batches drawn on the device, metrics per epoch."""

import jax
import numpy as np
from flax import nnx

from ngf.runs.config import OPTIMIZERS
from ngf.core.engine import Engine, choose_steps_per_call
from ngf.core.network import Network
from ngf.models import mlp
from ngf.plugins.bp import bp


def engine_for(data, steps_per_call, batch=10):
    model = mlp(data.input_shape, data.n_classes, rngs=nnx.Rngs(0), widths=(8,))
    net, params = Network.from_model(model, data.input_shape)
    engine = Engine(net, bp(), OPTIMIZERS["sgd"](0.1), batch, len(data.x_train), steps_per_call)
    return engine, engine.init(jax.random.key(0), params)


def test_scan_and_single_steps_agree(tiny_data):
    """96 examples, batch 10: 9 steps; 4 per call masks the last 3 of the third call."""
    results = []
    for per_call in (1, 4, 9):
        engine, state = engine_for(tiny_data, per_call)
        assert engine.n_steps == 9
        done = []
        state, metrics = engine.train_epoch(state, tiny_data.x_train, tiny_data.y_train, jax.random.key(3),
                                            on_progress=lambda d, t: done.append(d))
        assert done[-1] == 9 and done == sorted(done)
        results.append((jax.tree.leaves(state.params), metrics))
    for leaves, metrics in results[1:]:
        for a, b in zip(leaves, results[0][0]):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        assert abs(metrics["train_loss"] - results[0][1]["train_loss"]) < 1e-5


def test_evaluate_pads_the_last_batch(tiny_data):
    engine, state = engine_for(tiny_data, 1)
    full = engine.evaluate(state, tiny_data.x_test, tiny_data.y_test)
    logits = engine.net.logits(state.params, tiny_data.x_test.astype(np.float32) / 255)
    assert abs(full["accuracy"] - float(np.mean(np.argmax(logits, -1) == tiny_data.y_test))) < 1e-6


def test_fast_path_is_a_scan_for_dense_models(tiny_data):
    model = mlp(tiny_data.input_shape, 3, rngs=nnx.Rngs(0))
    assert choose_steps_per_call(model, 937) == 47
    conv = nnx.Conv(1, 2, (3, 3), rngs=nnx.Rngs(0))
    assert choose_steps_per_call(conv, 937) == 1
