"""python -m benchmarks: ngf's speed and memory, as ratios measured side by side in one run.

    NGF_DATA_DIR=../shared/datasets python -m benchmarks [--quick] [--sections rules,torch] [--json OUT]

``throughput`` times whole comparisons (every rule × 2 seeds, one epoch each) as processes:
ngf serial, with --workers auto, --stack 2 and both, against PyTorch eager back to back.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

SECTIONS = ("handwritten", "rules", "paths", "torch", "memory", "scaling", "throughput")


def _ints(text: str) -> tuple:
    return tuple(int(v) for v in text.split(",") if v)


def _names(text: str) -> tuple:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def parse(argv=None):
    from benchmarks.common import Settings
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("--sections", type=_names, default=SECTIONS,
                   help=f"comma-separated, of {','.join(SECTIONS)} (default: all; quick: all but paths)")
    p.add_argument("--models", type=_names, default=("mlp", "cnn"), help="mlp, cnn or both (default)")
    p.add_argument("--quick", action="store_true",
                   help="fewer epochs, smaller subsets, fewer scaling points and memory probes, no paths section")
    p.add_argument("--epochs", type=int, help="timed epochs after the warm-up (default 5; quick 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed epochs first (compilation included)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--mlp-width", type=int, default=512,
                   help="width of the mlp's two hidden layers in every framework (default 512, ngf's mlp; "
                        "DESIGN.md §5 timed 256)")
    p.add_argument("--data", default="mnist", help="mnist (found through $NGF_DATA_DIR) or synthetic")
    p.add_argument("--mlp-examples", type=int, help="training examples per mlp epoch (default: all 60000; "
                   "quick: 6400 on a CPU)")
    p.add_argument("--cnn-examples", type=int, help="training examples per cnn epoch (default: all on an "
                   "accelerator, 15000 on a CPU; quick: 20000, 3200 on a CPU)")
    p.add_argument("--scaling-examples", type=int, help="examples per timed epoch in the scaling sweeps")
    p.add_argument("--rules", type=_names, default=(), help="rules to time (default: every built-in one)")
    p.add_argument("--widths", type=_ints, default=Settings.widths, help="mlp widths of the scaling sweep")
    p.add_argument("--batches", type=_ints, default=Settings.batches, help="batch sizes of the scaling sweep")
    p.add_argument("--threads", type=int, help="PyTorch's threads (default: every core, as XLA uses)")
    p.add_argument("--json", metavar="OUT", help="also write every number, machine-readable, to OUT")
    p.add_argument("--png", default=Settings.png, help="where the scaling plot goes ('' for none)")
    p.add_argument("--render", metavar="JSON", help="print the tables of an earlier run's --json file, run nothing")
    args = p.parse_args(argv)
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        p.error(f"unknown section(s) {', '.join(sorted(unknown))}; valid: {', '.join(SECTIONS)}")
    if set(args.models) - {"mlp", "cnn"}:
        p.error("--models takes mlp, cnn or both")
    settings = Settings(sections=args.sections, quick=args.quick, epochs=args.epochs, warmup=args.warmup,
                        batch_size=args.batch_size, mlp_width=args.mlp_width, data=args.data, mlp_examples=args.mlp_examples,
                        cnn_examples=args.cnn_examples, scaling_examples=args.scaling_examples,
                        rules=args.rules, widths=args.widths, batches=args.batches, json=args.json,
                        png=args.png or None, threads=args.threads)
    return settings, args.models, args.render


def main(argv=None) -> dict:
    # JAX would take 75% of a GPU's memory at start, leaving PyTorch too little beside it.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    settings, models, render = parse(argv)
    if render:
        from benchmarks import report, suite
        from benchmarks.common import Settings
        result = json.loads(Path(render).read_text())
        saved = Settings(**{k: tuple(v) if isinstance(v, list) else v for k, v in result["settings"].items()})
        result["ratios"] = [row for model, pool in result["pools"].items()  # again, in today's form
                            for row in suite.ratio_rows(model, pool, saved)]
        print(report.render(result))
        return result
    import jax

    from benchmarks import report, suite
    from benchmarks.common import resolve
    settings = resolve(settings, jax.default_backend())
    if settings.png:
        Path(settings.png).parent.mkdir(parents=True, exist_ok=True)
    result = suite.run(settings, models)
    print(report.render(result))
    if settings.json:
        Path(settings.json).write_text(json.dumps(result, indent=1, default=str) + "\n")
        print(f"\nwrote {settings.json}", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
