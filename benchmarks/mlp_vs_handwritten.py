"""ngf `bp` on the default mlp against a hand-written jitted JAX + optax loop.

Both train the same network (784-512-512-10 relu, NNX's default initialisation)
on real MNIST with the same batch size and optimiser, with the data on the device
and batches drawn there. Epochs alternate between the two so drift on a shared
machine hits both alike; the median of the timed epochs after one warm-up is
compared. The hand-written side is timed both ways (one jitted step per Python
call, and the whole epoch in ``lax.scan``) and the faster one is the reference.

    NGF_DATA_DIR=../shared/datasets python benchmarks/mlp_vs_handwritten.py [--epochs 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from ngf.core.api import OPTIMIZERS
from ngf.core.engine import Engine, choose_steps_per_call
from ngf.core.network import Network
from ngf.models import mlp
from ngf.plugins.bp import bp
from ngf.plugins.datasets import ngf_register_datasets


def handwritten(params, x_all, y_all, batch: int, lr: float):
    """A plain JAX + optax training loop over plain dict parameters."""
    optimizer = optax.adam(lr)

    def loss_fn(p, x, y):
        z = x.reshape(x.shape[0], -1).astype(jnp.float32) / 255.0
        for w, b in p[:-1]:
            z = jax.nn.relu(z @ w + b)
        logits = z @ p[-1][0] + p[-1][1]
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], 1))

    def step(carry, rows):
        p, s = carry
        grads = jax.grad(loss_fn)(p, x_all[rows], y_all[rows])
        updates, s = optimizer.update(grads, s, p)
        return (optax.apply_updates(p, updates), s), None

    n_steps = x_all.shape[0] // batch
    step_jit = jax.jit(lambda c, rows: step(c, rows)[0], donate_argnums=0)
    scan_jit = jax.jit(lambda c, perm: jax.lax.scan(step, c, perm[: n_steps * batch].reshape(n_steps, batch))[0],
                       donate_argnums=0)

    def epoch_loop(carry, perm):
        for i in range(n_steps):
            carry = step_jit(carry, jax.lax.dynamic_slice_in_dim(perm, i * batch, batch))
        return jax.block_until_ready(carry)

    def epoch_scan(carry, perm):
        return jax.block_until_ready(scan_jit(carry, perm))

    return (params, optimizer.init(params)), {"hand-written, Python loop": epoch_loop,
                                              "hand-written, lax.scan": epoch_scan}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs after one warm-up")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    data = ngf_register_datasets()["mnist"]()
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    model = mlp(data.input_shape, 10, rngs=nnx.Rngs(0))
    net, params = Network.from_model(model, data.input_shape)
    n_steps = len(x) // args.batch_size
    engine = Engine(net, bp(), OPTIMIZERS["adam"](1e-3), args.batch_size, len(x),
                    choose_steps_per_call(model, n_steps))
    ngf_state = engine.init(jax.random.key(0), params)
    plain = [(p["linear"]["kernel"], p["linear"]["bias"]) for p in jax.tree.map(jnp.copy, params)]
    hand_states, hand_epochs = handwritten(plain, x, y, args.batch_size, 1e-3)
    hand_states = {name: jax.tree.map(jnp.copy, hand_states) for name in hand_epochs}
    times = {"ngf bp": []} | {name: [] for name in hand_epochs}
    for epoch in range(args.epochs + 1):
        key = jax.random.key(epoch)
        t0 = time.perf_counter()
        ngf_state, _ = engine.train_epoch(ngf_state, x, y, key)
        times["ngf bp"].append(time.perf_counter() - t0)
        perm = jax.random.permutation(key, len(x))
        for name, run_epoch in hand_epochs.items():
            t0 = time.perf_counter()
            hand_states[name] = run_epoch(hand_states[name], perm)
            times[name].append(time.perf_counter() - t0)
    medians = {name: statistics.median(t[1:]) for name, t in times.items()}
    reference = min((m, n) for n, m in medians.items() if n != "ngf bp")
    print(f"{'what':<28} {'median s/epoch':>15}   (batch {args.batch_size}, {n_steps} steps, "
          f"{args.epochs} timed epochs, {jax.devices()[0].platform})")
    for name, median in medians.items():
        print(f"{name:<28} {median:>15.3f}")
    print(f"ratio ngf bp / fastest hand-written ({reference[1]}): {medians['ngf bp'] / reference[0]:.3f}")


if __name__ == "__main__":
    main()
