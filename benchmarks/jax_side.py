"""JAX contenders: ngf's Engine with a registered rule and model, and hand-written JAX + optax loops.

The hand-written loops train the same network (same initial weights) with the same
batch, optimiser and data on the device, drawing each batch from a permutation on the
device, with nothing but ``jax.grad`` and ``optax``: the floor an ngf rule is held to.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from benchmarks.common import Dataset, Settings


@functools.cache
def registry():
    from ngf.host.registry import load_registry
    return load_registry()


def model_opts(model: str, settings: Settings) -> dict:
    """The networks every framework trains: the mlp at ``settings.mlp_width`` (512, the registered
    default), and cnn pinned to LeNet-5 with relu (DESIGN.md §5; the PyTorch twin is the same network)."""
    from ngf.models.cnn import LENET5
    return {"mlp": {"widths": (settings.mlp_width,) * 2}, "cnn": LENET5}.get(model, {})


def build_model(model: str, input_shape: tuple, settings: Settings, **opts) -> nnx.Module:
    """The registered model with the benchmark's options (``model_opts``), seed 0."""
    opts = {**model_opts(model, settings), **opts}
    return registry().get("model", model).factory(input_shape, 10, rngs=nnx.Rngs(0), **opts)


def ngf_engine(rule: str, model: str, data: Dataset, settings: Settings, steps_per_call: int | None = None,
               **model_opts):
    """An Engine, its initial state and the data on the device."""
    from ngf.core.engine import Engine, choose_steps_per_call
    from ngf.core.network import Network
    module = build_model(model, data.x.shape[1:], settings, **model_opts)
    net, params = Network.from_model(module, data.x.shape[1:])
    n_steps = len(data.x) // settings.batch_size
    per_call = steps_per_call or choose_steps_per_call(module, n_steps)
    engine = Engine(net, registry().get("rule", rule).factory(), optax.adam(settings.lr),
                    settings.batch_size, len(data.x), per_call)
    return engine, engine.init(jax.random.key(0), params), jnp.asarray(data.x), jnp.asarray(data.y)


def ngf_contender(rule: str, model: str, data: Dataset, settings: Settings, steps_per_call: int | None = None,
                  **model_opts):
    """One ngf epoch per call: Engine.train_epoch, which ends by fetching its metrics (synchronous)."""
    engine, state, x, y = ngf_engine(rule, model, data, settings, steps_per_call, **model_opts)
    box = [state]

    def epoch(i: int) -> None:
        box[0], _ = engine.train_epoch(box[0], x, y, jax.random.key(i))

    epoch.engine = engine
    return epoch


# ---- hand-written networks: plain arrays, plain functions ------------------------------------

def plain_params(model: str, input_shape: tuple, settings: Settings) -> list:
    """The registered model's initial weights as a list of (kernel, bias) pairs."""
    module = build_model(model, input_shape, settings)
    pairs = []
    for layer in module.layers:
        inner = layer.conv if hasattr(layer, "conv") else layer.linear
        pairs.append((jnp.array(inner.kernel[...]), jnp.array(inner.bias[...])))
    return pairs


def mlp_apply(params: list, x: jax.Array) -> jax.Array:
    """784-W-W-10 relu on flattened images."""
    z = x.reshape(x.shape[0], -1)
    for w, b in params[:-1]:
        z = jax.nn.relu(z @ w + b[None])
    return z @ params[-1][0] + params[-1][1][None]


def pool2(z: jax.Array) -> jax.Array:
    """2×2 max pooling by reshape-and-max, as ngf's cnn does."""
    n, h, w, c = z.shape
    return z[:, :h // 2 * 2, :w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def cnn_apply(params: list, x: jax.Array) -> jax.Array:
    """LeNet-5: conv5 (SAME) relu pool, conv5 (VALID) relu pool, 120, 84, 10; NHWC."""
    z = x
    for (k, b), padding in zip(params[:2], ("SAME", "VALID")):
        h = jax.lax.conv_general_dilated(z, k, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))
        z = pool2(jax.nn.relu(h + b[None, None, None]))
    return mlp_apply(params[2:], z)


APPLY = {"mlp": mlp_apply, "cnn": cnn_apply}


def handwritten_contender(mode: str, model: str, data: Dataset, settings: Settings):
    """A plain JAX + optax bp loop: ``loop`` (one jitted step per call) or ``scan`` (the epoch in one call)."""
    apply, batch = APPLY[model], settings.batch_size
    optimizer = optax.adam(settings.lr)
    x_all, y_all = jnp.asarray(data.x), jnp.asarray(data.y)
    n_steps = len(data.x) // batch

    def loss_fn(p, x, y):
        logits = apply(p, x.astype(jnp.float32) / 255.0)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    def step(carry, index, perm):
        p, s = carry
        rows = jax.lax.dynamic_slice_in_dim(perm, index * batch, batch)
        grads = jax.grad(loss_fn)(p, x_all[rows], y_all[rows])
        updates, s = optimizer.update(grads, s, p)
        return optax.apply_updates(p, updates), s

    if mode == "loop":
        call = jax.jit(step, donate_argnums=0)

        def run(carry, perm):
            for i in range(n_steps):
                carry = call(carry, i, perm)
            return carry
    else:
        run = jax.jit(lambda carry, perm: jax.lax.scan(
            lambda c, i: (step(c, i, perm), None), carry, jnp.arange(n_steps))[0], donate_argnums=0)

    params = plain_params(model, data.x.shape[1:], settings)
    box = [(params, optimizer.init(params))]

    def epoch(i: int) -> None:
        perm = jax.random.permutation(jax.random.key(i), len(data.x))
        box[0] = jax.block_until_ready(run(box[0], perm))

    return epoch


def steps_per_call(path: str, n_steps: int) -> int:
    """``1``: one step per call; ``scan``: the Engine's scan path (PROGRESS_CALLS calls an epoch); ``epoch``: one call."""
    from ngf.core.engine import PROGRESS_CALLS
    return {"1": 1, "scan": -(-n_steps // PROGRESS_CALLS), "epoch": n_steps}[path]


def build(spec: str, data: Dataset, settings: Settings):
    """A contender from ``ngf:RULE:MODEL`` (``ngf@1``, ``ngf@scan``, ``ngf@epoch`` force the Engine's path;
    ``ngf@patches`` convolves by im2col)
    or ``jax-loop:bp:MODEL`` / ``jax-scan:bp:MODEL``."""
    framework, rule, model = spec.split(":")
    if framework.startswith("ngf"):
        path = framework.partition("@")[2]
        if path == "patches":  # the default path, with convolutions by im2col
            return ngf_contender(rule, model, data, settings, None, conv_method="patches")
        per_call = steps_per_call(path, len(data.x) // settings.batch_size) if path else None
        return ngf_contender(rule, model, data, settings, per_call)
    return handwritten_contender(framework.removeprefix("jax-"), model, data, settings)


def device_peak_bytes() -> int | None:
    """Peak bytes allocated on the first device, where the backend reports it (GPU, TPU)."""
    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")
