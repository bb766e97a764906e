"""Data parallelism: one step on 4 (forced host) devices equals one step on 1."""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import jax, numpy as np
    from flax import nnx
    from conftest import make_tiny
    from ngf.runs.config import OPTIMIZERS
    from ngf.core.engine import Engine
    from ngf.core.network import Network
    from ngf.core.parallel import DataParallel
    from ngf.host.registry import load_registry

    assert jax.device_count() == 4, jax.devices()
    data = make_tiny(n_train=32)
    registry = load_registry(autoload=False)
    results = {}
    for rule in ("bp", "lra"):
        for n in (1, 4):
            model = registry.models["mlp"].factory(data.input_shape, 3, rngs=nnx.Rngs(0), widths=(16,))
            net, params = Network.from_model(model, data.input_shape)
            initial = [np.array(a) for a in jax.tree.leaves(params)]  # the step donates params
            parallel = DataParallel.over(n) if n > 1 else None
            engine = Engine(net, registry.rules[rule].factory(), OPTIMIZERS["sgd"](0.5), 32, 32, 1, parallel)
            state = engine.init(jax.random.key(0), params)
            x, y = engine.place((jax.numpy.asarray(data.x_train), jax.numpy.asarray(data.y_train)))
            state, _ = engine.train_epoch(state, x, y, jax.random.key(1))  # one step: 32 of 32
            results[rule, n] = [np.asarray(a) for a in jax.tree.leaves(state.params)]
            if n > 1:
                assert len(state.params[0]["linear"]["kernel"].sharding.device_set) == 4
        moved = max(float(np.abs(a - b).max()) for a, b in zip(results[rule, 1], initial))
        assert moved > 1e-3, moved  # the step did change the parameters
        gap = max(float(np.abs(a - b).max()) for a, b in zip(results[rule, 1], results[rule, 4]))
        assert gap < 1e-5, (rule, gap)
    print("parallel ok")
""")


def test_four_devices_match_one():
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4".strip()  # the suite's kept
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=os.path.dirname(__file__), env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "parallel ok" in proc.stdout
