"""The sweep behind cnn's defaults (docs/experiments.md (e)): cnn options × rules × datasets.

Each configuration trains bp, lra, fa and dfa for ten epochs on MNIST and Fashion-MNIST
(seed 0) through ``ngf.run``, in worker processes that each keep JAX loaded; every
finished run is one JSON line in OUT, and the table of test accuracies is printed at
the end (or from OUT alone with ``--table``). On one H200, 8 workers ran the 208 runs in
about 12 minutes; on a 2-core CPU a run takes 3–6 minutes.

    NGF_DATA_DIR=../shared/datasets python scripts/cnn_sweep.py --out sweep.jsonl --workers 8
    python scripts/cnn_sweep.py --out sweep.jsonl --table
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
import traceback

OLD = {"channels": "6,16", "widths": "120,84", "activation": "relu", "padding": "same,valid"}  # before the sweep
TANH = {**OLD, "activation": "tanh"}
# (model options on top of OLD, other run options)
CONFIGS = [({}, {}), ({"padding": "same"}, {}), ({"channels": "16,32"}, {}),
           ({"channels": "16,32", "padding": "same"}, {}), ({"channels": "32,64"}, {}),
           ({"channels": "32,64", "padding": "same"}, {}), ({"kernel": "5"}, {}),
           ({"kernel": "5", "channels": "16,32"}, {}), ({"channels": "16,32", "widths": "256,128"}, {}),
           ({}, {"batch_size": 32}), ({"channels": "16,32"}, {"batch_size": 32}),
           ({"channels": "32,64", "widths": "256,128"}, {}), ({"channels": "16,32"}, {"lr": 2e-3}),
           ({"activation": "elu"}, {})]
CONFIGS += [({"activation": "tanh", **mo}, extra) for mo, extra in [
    ({}, {}), ({"padding": "same"}, {}), ({"channels": "16,32"}, {}),
    ({"channels": "16,32", "padding": "same"}, {}), ({"widths": "256,128"}, {}), ({}, {"batch_size": 32}),
    ({"kernel": "5"}, {}), ({"channels": "32,64"}, {}), ({"channels": "16,32", "widths": "256,128"}, {}),
    ({"channels": "12,24", "padding": "same"}, {}), ({"channels": "8,16", "padding": "same"}, {}),
    ({"channels": "16,32", "padding": "same", "widths": "256,128"}, {})]]
RULES, DATASETS = ("bp", "lra", "fa", "dfa"), ("mnist", "fashion-mnist")
OUTCOMES = ("test", "train", "epoch_seconds", "error", "trace")  # what a result adds to its job


def jobs(epochs: int) -> list[dict]:
    """One run per configuration, dataset and rule (RunConfig fields)."""
    return [{"rule": rule, "model": "cnn", "dataset": ds, "epochs": epochs, "seed": 0,
             "model_opts": {**OLD, **mo}, **extra}
            for mo, extra in CONFIGS for ds in DATASETS for rule in RULES]


def job_key(record: dict) -> str:
    """A job (or a result's job) as a canonical string."""
    return json.dumps({k: v for k, v in record.items() if k not in OUTCOMES}, sort_keys=True)


def train(job: dict) -> dict:
    """Run one job; its test accuracy, or the error that stopped it."""
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # many processes share one GPU
    from ngf.runs.api import run
    from ngf.runs.config import RunConfig
    try:
        summary = run(RunConfig(**job))
        return {**job, "test": summary["test_accuracy"], "train": summary["train_accuracy"],
                "epoch_seconds": summary["epoch_seconds"]}
    except Exception as exc:  # noqa: BLE001 -- one failed run does not end the sweep
        return {**job, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-600:]}


def label(job: dict) -> str:
    """The options a job changes from OLD, e.g. ``activation=tanh, batch 32``."""
    parts = [f"{k}={v}" for k, v in job["model_opts"].items() if OLD.get(k) != v]
    parts += [f"batch {job['batch_size']}"] if "batch_size" in job else []
    parts += [f"lr {job['lr']:g}"] if "lr" in job else []
    return ", ".join(parts) or "relu, 6,16 channels, 120,84 (the old default)"


def table(results: list[dict]) -> str:
    """Markdown: one row per configuration, test accuracy per dataset and rule."""
    cols = [(ds, rule) for ds in DATASETS for rule in RULES]
    rows: dict = {}
    for r in results:
        rows.setdefault(label(r), {})[(r["dataset"], r["rule"])] = r.get("test")
    head = "| options | " + " | ".join(f"{'MNIST' if d == 'mnist' else 'Fashion'} {r}" for d, r in cols) + " |"
    lines = [head, "|" + " --- |" * (len(cols) + 1)]
    for name, got in rows.items():
        cells = [f"{got[c]:.4f}" if got.get(c) is not None else "—" for c in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    """Run the sweep (skipping jobs OUT already holds) and print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="JSON lines, one per finished run (appended to)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--table", action="store_true", help="print the table of OUT, run nothing")
    args = p.parse_args()
    done = [json.loads(line) for line in open(args.out)] if os.path.exists(args.out) else []
    if not args.table:
        seen = {job_key(r) for r in done if "error" not in r}
        todo = [j for j in jobs(args.epochs) if job_key(j) not in seen]
        started = time.time()
        with multiprocessing.get_context("spawn").Pool(args.workers) as pool, open(args.out, "a") as out:
            for i, result in enumerate(pool.imap_unordered(train, todo), 1):
                out.write(json.dumps(result) + "\n")
                out.flush()
                done.append(result)
                print(f"[{time.time() - started:5.0f} s] {i}/{len(todo)} {result['rule']} {result['dataset']} "
                      f"{label(result)}: {result.get('test', result.get('error'))}", flush=True)
    print(table([r for r in done if r.get("epochs") == args.epochs]))


if __name__ == "__main__":
    main()
