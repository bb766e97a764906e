"""Seconds per epoch of one `ngf run`, two source trees interleaved in one session.

    python scripts/before_after.py --before /tmp/before/src --after src --pairs 3 \
        -- --rule bp --model resnet --epochs 3

Runs the same `ngf run` arguments alternately with each tree's ``src`` first on
PYTHONPATH (before, after, before, after...), so that drift of this shared machine
falls on both alike, and prints the median epoch of each (the first epoch of every run,
which compiles, left out) and their ratio after / before. For a tree that predates a
change, make one with ``git worktree add /tmp/before COMMIT``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def one_run(src: str, args: list[str]) -> list[float]:
    """The epoch seconds of one `ngf run ARGS` with ``src`` first on the import path."""
    with tempfile.TemporaryDirectory() as out:
        env = dict(os.environ, PYTHONPATH=os.path.abspath(src))
        code = "import sys; from ngf.cli import main; sys.exit(main())"
        subprocess.run([sys.executable, "-c", code, "run", *args, "--quiet", "--out", out, "--overwrite"],
                       env=env, check=True, stdout=subprocess.DEVNULL)
        return json.loads((Path(out) / "summary.json").read_text())["epoch_seconds"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", required=True, help="the src folder of the tree before the change")
    p.add_argument("--after", required=True, help="the src folder of the tree after it")
    p.add_argument("--pairs", type=int, default=3, help="runs of each, interleaved (default 3)")
    p.add_argument("run_args", nargs=argparse.REMAINDER, help="-- then the arguments of `ngf run`")
    args = p.parse_args(argv)
    run_args = args.run_args[1:] if args.run_args[:1] == ["--"] else args.run_args
    epochs = {"before": [], "after": []}
    for i in range(args.pairs):
        for name in ("before", "after"):
            seconds = one_run(getattr(args, name), run_args)
            epochs[name] += seconds[1:]
            print(f"pair {i + 1} {name}: {', '.join(f'{s:.2f}' for s in seconds)} s", flush=True)
    medians = {name: statistics.median(values) for name, values in epochs.items()}
    print(f"median epoch: before {medians['before']:.2f} s, after {medians['after']:.2f} s, "
          f"after / before {medians['after'] / medians['before']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
