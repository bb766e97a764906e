"""Preemption and writer-race trials for `ngf run ... --out DIR --resume-if-exists` (issue 20).

    NGF_DATA_DIR=../shared/datasets .venv/bin/python scripts/preemption_trials.py [--kills 20] [--races 10]

Kills: an uninterrupted reference run, then a second one (the JAX compilation cache now
warm, as for every later process) that must match it and whose process's life is the
kill window. Then `--kills` trials, each in a fresh folder: the preemption-safe command
is started and SIGKILLed at a uniformly random moment from 0 s to the end of that life
(start-up, loading, compiling, training and writing alike; a process that ended before
its kill is not counted, and its trial is drawn again), then the same command,
unchanged, is repeated until it exits 0. A trial passes when the run completed and its
metrics.jsonl equals the reference's, less the wall-time field "seconds".

Races: `--races` trials, each two `ngf run` on one new folder with different seeds, the
second started 0 to 1 s after the first (the offsets spread evenly). A trial passes when
exactly one exits 0, the other exits 2 printing one line (the holder's pid, or "already
holds files" when the winner had written its files before the loser looked), and the
folder holds the winner's run intact: its metrics.jsonl equals an uninterrupted run of
the winner's seed. The tally says how often the second-started one was the refused one.

Prints a line per trial and a tally; exits 1 if any trial failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REFUSED = re.compile(r"in use by another ngf run \(pid (\d+)\)|already holds files")


def metrics(folder: Path) -> list[dict]:
    """metrics.jsonl without the wall-time field."""
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (folder / "metrics.jsonl").read_text().splitlines()]


class Runner:
    """Starts `ngf run` processes with a shared JAX compilation cache, their output to log files."""

    def __init__(self, work: Path, run_opts: list[str]):
        self.work, self.run = work, [sys.executable, "-m", "ngf.cli", "run", *run_opts, "--quiet"]
        self.env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(work / "jax-cache"),
                    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}

    def start(self, extra: list[str], log: Path) -> subprocess.Popen:
        """One process (Ctrl-C at its default, even when this script runs in the background)."""
        with open(log, "w") as handle:
            return subprocess.Popen([*self.run, *extra], env=self.env, stdout=handle, stderr=subprocess.STDOUT,
                                    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def reference(self, name: str, seed: int) -> tuple[Path, float]:
        """An uninterrupted run of ``seed``, and its process's wall time."""
        folder = self.work / name
        shutil.rmtree(folder, ignore_errors=True)
        began = time.perf_counter()
        code = self.start(["--seed", str(seed), "--out", str(folder)], folder.with_suffix(".log")).wait()
        if code != 0:
            raise SystemExit(f"the uninterrupted run failed ({code}); see {folder.with_suffix('.log')}")
        return folder, time.perf_counter() - began


def kill_trials(runner: Runner, count: int, rng: random.Random) -> int:
    """``count`` trials of a random SIGKILL, then the same command until it completes; returns failures."""
    reference, cold = runner.reference("reference", 0)
    again, life = runner.reference("again", 0)
    target = metrics(reference)
    print(f"kills: reference {len(target)} epochs, {cold:.1f} s a process (compiling), {life:.1f} s with the "
          f"cache; a second run {'matches it' if metrics(again) == target else 'DIFFERS'}; "
          f"killing from 0 to {life:.1f} s")
    failures, trial, missed = 0, 0, 0
    while trial < count:
        cut = runner.work / f"kill{trial + 1}"
        shutil.rmtree(cut, ignore_errors=True)
        command = ["--seed", "0", "--out", str(cut), "--resume-if-exists"]
        delay = rng.uniform(0, life)
        proc = runner.start(command, runner.work / f"kill{trial + 1}-0.log")
        time.sleep(delay)
        if proc.poll() is not None:  # it ended before its kill: no kill, draw again
            missed += 1
            continue
        trial += 1
        proc.send_signal(signal.SIGKILL)
        killed = proc.wait()
        on_disk = len(metrics(cut)) if (cut / "metrics.jsonl").is_file() else 0
        codes = []
        while len(codes) < 5 and (not codes or codes[-1] != 0):
            codes.append(runner.start(command, runner.work / f"kill{trial}-{len(codes) + 1}.log").wait())
        done = (codes[-1] == 0 and json.loads((cut / "summary.json").read_text())["status"] == "completed"
                and metrics(cut) == target)
        failures += not done
        print(f"kill {trial:2d}: SIGKILL at {delay:4.1f} s (exit {killed}, {on_disk} epochs on disk, "
              f"folder {'exists' if cut.exists() else 'absent'}); repeated: exits {codes}; "
              f"{'equal to the uninterrupted run' if done else 'DIFFERENT or unfinished'}")
    print(f"kills: {count - failures}/{count} ended equal to the uninterrupted run "
          f"({missed} drawn moments came after the process had ended and were drawn again)")
    return failures


def _one_line(log: Path) -> str | None:
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    return lines[0] if len(lines) == 1 else None


def race_trials(runner: Runner, count: int) -> int:
    """``count`` races of two writers on one folder; returns failures."""
    references = {seed: metrics(runner.reference(f"race-reference{seed}", seed)[0]) for seed in (1, 2)}
    failures, second_refused = 0, 0
    for trial in range(1, count + 1):
        shared, offset = runner.work / f"race{trial}", (trial - 1) / max(count - 1, 1)
        shutil.rmtree(shared, ignore_errors=True)
        logs = [runner.work / f"race{trial}-{n}.log" for n in (1, 2)]
        first = runner.start(["--seed", "1", "--out", str(shared)], logs[0])
        time.sleep(offset)
        second = runner.start(["--seed", "2", "--out", str(shared)], logs[1])
        procs = {1: first, 2: second}
        codes = {seed: proc.wait() for seed, proc in procs.items()}
        winners = [seed for seed, code in codes.items() if code == 0]
        losers = [seed for seed, code in codes.items() if code == 2]
        ok, why = len(winners) == 1 and len(losers) == 1, "not one winner and one refused"
        if ok:
            line = _one_line(logs[losers[0] - 1])
            found = REFUSED.search(line or "")
            names_winner = found is not None and found.group(1) in (None, str(procs[winners[0]].pid))
            intact = (shared / "metrics.jsonl").is_file() and metrics(shared) == references[winners[0]]
            ok, why = names_winner and intact, line or "more than one line"
            second_refused += ok and losers[0] == 2
        failures += not ok
        print(f"race {trial:2d}: second started {offset:.2f} s later; exits {codes}; "
              f"{'winner seed %d intact' % winners[0] if ok else 'FAILED'}; loser said: {why}")
    print(f"races: {count - failures}/{count} refused the loser in one line with the winner's results intact; "
          f"the second-started writer was the refused one in {second_refused}/{count}")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--races", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill schedule")
    parser.add_argument("--work", default=None, help="folder for the runs (default: a temporary one)")
    parser.add_argument("--run-opts", default="--rule lra --rule-opt learn_e=true --model-opt widths=32 "
                        "--batch-size 600 --dataset mnist --epochs 4", help="options of every run")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="ngf-preemption-"))
    work.mkdir(parents=True, exist_ok=True)
    runner = Runner(work, args.run_opts.split())
    failed = kill_trials(runner, args.kills, random.Random(args.seed)) if args.kills else 0
    failed += race_trials(runner, args.races) if args.races else 0
    print(f"work folder: {work}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
