"""Seconds per epoch: K seeds stacked (one vmapped program) against K lone runs one after another.

    NGF_DATA_DIR=../shared/datasets .venv/bin/python scripts/stack_timing.py [--models mlp,cnn]
        [--sizes 2,4] [--rule bp] [--train 12800] [--repeats 3] [--lenet5]

On a GPU (issue 15, item 5): ``--models cnn --lenet5 --sizes 4,16,64 --train 60000``.

For each model (``--lenet5``: the cnn with ``ngf.models.cnn.LENET5``'s options, the
network ``python -m benchmarks`` times), the lone engine and the stacked engine (``ngf.core.stacked``) train on
the first ``--train`` MNIST examples (batch 64); the first epoch (compilation) is
discarded and the median of ``--repeats`` later epochs is reported. ``lone × K`` is K
times the lone epoch (what K runs one after another cost); ``ratio`` is the stacked
epoch over that (below 1: stacking is faster); the process's CPU time is compared
alike (less sensitive to other processes on a shared machine). Prints one line per (model, K) and a
JSON line per model, which the default of ``--stack`` (``ngf.experiments.stacked``) cites.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax

from ngf.core.engine import Engine, choose_steps_per_call
from ngf.core.init import seed_key
from ngf.core.stacked import StackedEngine
from ngf.host.registry import load_registry
from ngf.models.cnn import LENET5
from ngf.runs.config import RunConfig, make_optimizer
from ngf.runs.resolve import resolve


def _setup(rule: str, model: str, n_train: int, seeds: int, opts: dict):
    """The lone engine, the data on the device and each seed's parameters and keys."""
    registry = load_registry()
    runs = [resolve(RunConfig(rule=rule, model=model, dataset="mnist", seed=s, model_opts=opts), registry)
            for s in range(seeds)]
    data = runs[0].data
    x, y = jax.numpy.asarray(data.x_train[:n_train]), jax.numpy.asarray(data.y_train[:n_train])
    n_steps = n_train // 64
    config = RunConfig(rule=rule, model=model)
    engine = Engine(runs[0].net, runs[0].rule, make_optimizer(config, n_steps), 64, n_train,
                    choose_steps_per_call(runs[0].model, n_steps))
    keys = [jax.random.split(seed_key(s)) for s in range(seeds)]
    return engine, (x, y), [r.params for r in runs], keys


def _median_epoch(train, repeats: int) -> tuple[float, float]:
    """The median wall time and process CPU time of ``repeats`` epochs after a first (compiling) one."""
    train(0)
    times = []
    for epoch in range(1, repeats + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        train(epoch)
        times.append((time.perf_counter() - t0, time.process_time() - c0))
    return statistics.median(t for t, _ in times), statistics.median(c for _, c in times)


def measure(rule: str, model: str, sizes, n_train: int, repeats: int, opts: dict | None = None) -> dict:
    """``{"lone": (wall, cpu), "stacked": {K: (wall, cpu)}}``: seconds per epoch."""
    engine, (x, y), params, keys = _setup(rule, model, n_train, max(sizes), opts or {})
    state = [engine.init(keys[0][0], jax.tree.map(jax.numpy.copy, params[0]))]  # the lone run donates its copy

    def lone(epoch):
        state[0], _ = engine.train_epoch(state[0], x, y, jax.random.fold_in(keys[0][1], epoch))

    result = {"lone": _median_epoch(lone, repeats), "stacked": {}}
    stacked = StackedEngine(engine)
    for k in sizes:
        held = [stacked.init([keys[i][0] for i in range(k)], params[:k])]

        def together(epoch, k=k):
            held[0], _ = stacked.train_epoch(held[0], x, y, [jax.random.fold_in(keys[i][1], epoch) for i in range(k)])

        result["stacked"][k] = _median_epoch(together, repeats)
    return result


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--sizes", default="2,4")
    parser.add_argument("--rule", default="bp")
    parser.add_argument("--train", type=int, default=12800)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lenet5", action="store_true", help="the cnn as LeNet-5 (ngf.models.cnn.LENET5)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"device: {jax.devices()[0].device_kind}, rule {args.rule}, {args.train} examples, batch 64")
    for model in args.models.split(","):
        opts = dict(LENET5) if args.lenet5 and model == "cnn" else {}
        result = measure(args.rule, model, sizes, args.train, args.repeats, opts)
        (lone, lone_cpu) = result["lone"]
        for k, (seconds, cpu) in result["stacked"].items():
            print(f"{model}: K={k} stacked {seconds:.3f} s/epoch, lone {lone:.3f} × {k} = {lone * k:.3f} s, "
                  f"ratio {seconds / (lone * k):.2f} (CPU time: {cpu:.3f} against {lone_cpu * k:.3f} s, "
                  f"ratio {cpu / (lone_cpu * k):.2f})")
        print(json.dumps({"model": model, "lenet5": bool(opts), "rule": args.rule,
                          "device": jax.devices()[0].device_kind, **result}))


if __name__ == "__main__":
    main()
