"""Kolen–Pollack's feedback weights against the forward weights, epoch by epoch (issue 14).

Trains ``kp`` (or another rule with feedback weights in ``state.feedback``: fa, lra) on a
model and dataset and prints, after each epoch, the test accuracy and the angle in
degrees between each node's feedback weights B and its forward weights W (kernels only:
the feedback's bias entries are never read).

    NGF_DATA_DIR=../shared/datasets python scripts/kp_feedback_angles.py --rule kp --model cnn \
        --optimizer sgd --lr 0.01 --epochs 3
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp

from ngf.core.alignment import feedback_angles
from ngf.runs.config import OPTIMIZERS, RunConfig, make_optimizer
from ngf.runs.resolve import build_network, resolve_data, resolve_model, resolve_rule
from ngf.core.engine import Engine, choose_steps_per_call
from ngf.core.init import initialise
from ngf.host.registry import load_registry


def rounded(angles: list) -> list:
    """Angles to 0.01°, None kept."""
    return [None if a is None else round(a, 2) for a in angles]


def main() -> None:
    """Parse options, train, print one JSON line per epoch."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rule", default="kp")
    parser.add_argument("--rule-opt", action="append", default=[])
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--optimizer", default="adam", choices=sorted(OPTIMIZERS))
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--schedule", default="cosine", choices=("constant", "cosine"), help="as ngf run's")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    opts = dict(o.split("=", 1) for o in args.rule_opt)
    config = RunConfig(rule=args.rule, model=args.model, dataset=args.dataset, seed=args.seed, rule_opts=opts,
                       optimizer=args.optimizer, lr=args.lr, epochs=args.epochs,
                       schedule=args.schedule)
    registry = load_registry()
    rule, _ = resolve_rule(config, registry)
    data, _ = resolve_data(config, registry)
    model, _ = resolve_model(config, data, registry)
    net, params = build_network(model, data, {"model": args.model, "dataset": args.dataset})
    params = initialise(params, config.init, args.seed)
    n_steps = len(data.x_train) // config.batch_size
    engine = Engine(net, rule, make_optimizer(config, n_steps), config.batch_size, len(data.x_train),
                    choose_steps_per_call(model, n_steps))
    x_train, y_train, x_test, y_test = map(jnp.asarray, data[:4])
    rule_key, data_key = jax.random.split(jax.random.key(args.seed))
    state = engine.init(rule_key, params)
    print(json.dumps({"epoch": 0, "angles_BW": rounded(feedback_angles(state.params, state.rule_state.feedback))}))
    for epoch in range(1, args.epochs + 1):
        state, _ = engine.train_epoch(state, x_train, y_train, jax.random.fold_in(data_key, epoch))
        test = engine.evaluate(state, x_test, y_test)
        print(json.dumps({"epoch": epoch, "test_accuracy": round(test["accuracy"], 4),
                          "angles_BW": rounded(feedback_angles(state.params, state.rule_state.feedback))}), flush=True)


if __name__ == "__main__":
    main()
