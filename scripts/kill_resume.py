"""Kill ngf runs at random moments, resume them, and check they end where an uninterrupted run does.

    NGF_DATA_DIR=../shared/datasets .venv/bin/python scripts/kill_resume.py [--kills 20] [--epochs 4]

Runs `ngf run` (small settings on MNIST by default) twice uninterrupted: the reference,
and a second run that must match it (determinism) and whose wall time sets the window
for the kills. Then, until `--kills` kills have been made: a fresh run is started and
killed 1–3 times (SIGKILL, or now and then SIGINT or SIGTERM), each time resumed with
`ngf run --resume DIR` (or started again if the kill came before the run wrote
DIR/config.toml), then resumed to the end. Every other kill comes at a uniformly random
moment of the process's life (start-up included: importing, loading, compiling); the
others at a uniformly random moment of its training, once it has (re)written
DIR/config.toml (just before its first epoch or after reading the checkpoint). Every
finished run must have the reference's test accuracy and metrics.jsonl (less the
wall-time field "seconds"). Prints a line per kill and a summary; exits 1 on any
mismatch or failed resume.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIGNALS = [(signal.SIGKILL, 6), (signal.SIGINT, 2), (signal.SIGTERM, 2)]  # (signal, weight)


def metrics(folder: Path) -> list[dict]:
    """metrics.jsonl without the wall-time field."""
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (folder / "metrics.jsonl").read_text().splitlines()]


def lines(path: Path) -> int:
    try:
        return len(path.read_text().splitlines())
    except OSError:
        return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill schedule (the runs use --seed 0)")
    parser.add_argument("--work", default=None, help="folder for the runs (default: a temporary one)")
    parser.add_argument("--run-opts", default="--rule lra --rule-opt learn_e=true --model-opt widths=32 "
                        "--batch-size 600 --dataset mnist", help="options of the run")
    parser.add_argument("--no-cache", action="store_true", help="compile in every process (no JAX cache)")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    work = Path(args.work or tempfile.mkdtemp(prefix="ngf-kill-resume-"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if not args.no_cache:  # a persistent compilation cache: processes after the first load, not compile
        env.update({"JAX_COMPILATION_CACHE_DIR": str(work / "jax-cache"),
                    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"})
    ngf = [sys.executable, "-m", "ngf.cli", "run"]
    run = [*ngf, *args.run_opts.split(), "--epochs", str(args.epochs), "--seed", "0", "--quiet"]

    def start(argv, log):  # with Ctrl-C's default action, even when this script runs in the background
        return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    reference, again = work / "reference", work / "again"
    for folder in (reference, again):
        shutil.rmtree(folder, ignore_errors=True)
        began = time.perf_counter()
        with open(folder.with_suffix(".log"), "w") as log:
            if start([*run, "--out", str(folder)], log).wait() != 0:
                print(f"the uninterrupted run failed; see {folder.with_suffix('.log')}")
                return 1
        window = time.perf_counter() - began
    target = json.loads((reference / "summary.json").read_text())
    training = json.loads((again / "summary.json").read_text())["wall_seconds"]  # from the config on
    same_twice = metrics(again) == metrics(reference)
    print(f"reference: test_accuracy {target['test_accuracy']}, {window:.1f} s a run; "
          f"a second run {'matches it' if same_twice else 'DIFFERS'} (metrics.jsonl less seconds)")

    kills, trials, failures, codes = 0, 0, [], {}
    while kills < args.kills:
        trials += 1
        cut = work / f"trial{trials}"
        shutil.rmtree(cut, ignore_errors=True)
        for _ in range(min(rng.randint(1, 3), args.kills - kills)):
            if (cut / "config.toml").is_file():
                argv = [*ngf, "--resume", str(cut)]
            else:
                argv = [*run, "--out", str(cut), "--overwrite"]
            sig = rng.choices([s for s, _ in SIGNALS], [w for _, w in SIGNALS])[0]
            done = lines(cut / "metrics.jsonl")
            while_training = kills % 2 == 1
            with open(work / f"trial{trials}-kill{kills + 1}.log", "w") as log:
                spawned = time.time()
                proc = start(argv, log)
                if while_training:  # once this process has (re)written config.toml
                    config = cut / "config.toml"
                    while proc.poll() is None and not (config.is_file() and config.stat().st_mtime > spawned):
                        time.sleep(0.01)
                    delay = rng.uniform(0, training * (args.epochs - done) / args.epochs)
                else:
                    delay = rng.uniform(0, window)
                time.sleep(delay)
                proc.send_signal(sig)
                code = proc.wait()
            kills += 1
            codes[code] = codes.get(code, 0) + 1
            print(f"kill {kills:2d}: trial {trials}, {sig.name} {delay:4.1f} s after "
                  f"{'its training began' if while_training else 'it started'}, exit {code}, "
                  f"epochs on disk {done} -> {lines(cut / 'metrics.jsonl')}")
        with open(work / f"trial{trials}-last.log", "w") as log:
            argv = ([*ngf, "--resume", str(cut)] if (cut / "config.toml").is_file()
                    else [*run, "--out", str(cut), "--overwrite"])
            code = start(argv, log).wait()
        if code != 0:
            failures.append(f"trial {trials}: the last resume exited {code}")
            continue
        summary = json.loads((cut / "summary.json").read_text())
        equal = (summary["status"] == "completed" and summary["test_accuracy"] == target["test_accuracy"]
                 and metrics(cut) == metrics(reference))
        print(f"trial {trials}: {summary['status']}, test_accuracy {summary['test_accuracy']} "
              f"({'equal' if equal else 'DIFFERENT'})")
        if not equal:
            failures.append(f"trial {trials}: differs from the reference")
    print(f"{kills} kills in {trials} trials, exit statuses {dict(sorted(codes.items()))}; "
          f"{trials - len(failures)} of {trials} trials ended equal to the uninterrupted run"
          + ("" if same_twice else "; the two uninterrupted runs differed"))
    for failure in failures:
        print("FAILED", failure)
    return 0 if not failures and same_twice else 1


if __name__ == "__main__":
    sys.exit(main())
