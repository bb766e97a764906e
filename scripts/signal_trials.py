"""Send SIGINT or SIGTERM to `ngf run` at spread moments of its start-up and tally what happens.

    .venv/bin/python scripts/signal_trials.py [--trials 60] [--max-delay 5] [--training 6] [--parallel 6] [--verbose]

Each trial starts the `ngf` console script on the tiny test dataset (`--plugin ngf_tiny_data
--dataset tiny`, the tests folder on PYTHONPATH) with far more epochs than it can finish,
waits a moment (the trials' moments are spread evenly over 0 to `--max-delay` seconds,
SIGINT and SIGTERM alternating), signals it, and waits for it to end; `--training N` more
trials write a run folder and are signalled 0–0.5 s after its first epoch is recorded. A trial is clean
when the process ends with 130 (SIGINT) or 143 (SIGTERM), as the shell reports it (a
process killed by the signal itself before Python could answer counts as that status),
prints at most one line, and prints neither "Traceback" nor "Exception ignored". One
that is still working after 60 CPU seconds past its signal (its own progress, not the wall
clock, so that a loaded machine only slows the verdict) swallowed it. A SIGINT in the first
milliseconds, before `ngf.cli.main` runs (Python starting, pip's wrapper script importing
`re`, then `ngf.cli`), meets Python's own handler and prints its traceback: such trials
are tallied apart, as "before main" (about the first 20 ms on an idle machine; more when
many processes start at once). Each trial starts with SIGINT at its default disposition, as
a command typed at a terminal does: run from a script's background job (`cmd &`), this
script inherits SIGINT ignored, `ngf` keeps an inherited ignored SIGINT ignored
(docs/errors.md), and every SIGINT trial would otherwise be "swallowed", whatever the load. Prints one line per unclean trial (every trial with
--verbose) and a tally; exits 1 when any trial was unclean otherwise.
tests/test_signals.py runs the same trials, fewer of them.
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal's number, as shells report it
RUN = ["run", "--plugin", "ngf_tiny_data", "--dataset", "tiny", "--epochs", "1000000", "--batch-size", "16",
       "--model-opt", "widths=8", "--rule", "bp", "--quiet"]
SWALLOWED_AFTER = 60.0  # CPU seconds a signalled process may work on before it ends (its own progress)
WALL_LIMIT = 1800.0  # and a bound in wall time, so that a trial always ends
BEFORE_MAIN = "before main (Python's own start-up)"


class Trial(NamedTuple):
    """What one signalled `ngf run` did."""

    delay: float  # seconds from the start to the signal
    signum: int
    status: int | None  # as the shell reports it; None: still working SWALLOWED_AFTER CPU s after the signal
    output: str  # stdout and stderr, together
    cpu_at_signal: float | None = None  # CPU seconds the process had used when it was signalled

    @property
    def before_main(self) -> bool:
        """Whether a SIGINT came before ``ngf.cli.main`` could install its handlers: Python's own
        traceback through the console script's imports, no ngf function in it."""
        lines = self.output.strip().splitlines()
        frames = [line for line in lines if line.startswith("  File ")]
        in_ngf_code = [f for f in frames if "/ngf/" in f and not f.endswith(", in <module>")]
        return (self.signum == signal.SIGINT and bool(lines) and lines[-1] == "KeyboardInterrupt"
                and "Exception ignored" not in self.output and bool(frames) and not in_ngf_code)

    @property
    def verdict(self) -> str:
        """``clean``, or what went wrong."""
        lines = self.output.strip().splitlines()
        if self.status is None:
            return "swallowed (still running)"
        if self.status == 128 + signal.SIGSEGV:
            return "segfault"
        if self.before_main:
            return BEFORE_MAIN
        if "Traceback" in self.output or "Exception ignored" in self.output:
            return "traceback"
        if self.status != EXIT_STATUS[self.signum]:
            return f"exit {self.status}"
        if len(lines) > 1:
            return f"{len(lines)} lines"
        return "clean"


def ngf_command() -> list[str]:
    """The `ngf` console script beside this Python, else ``python -m ngf.cli``."""
    script = Path(sys.executable).with_name("ngf")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "ngf.cli"]


def environment() -> dict:
    """The environment of a trial: the test plugins importable, no third-party plugins."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "tests"), env.get("PYTHONPATH")]))
    env["NGF_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    return env


def sigint_at_default() -> None:
    """In the child before it runs `ngf`: SIGINT back at its default, as at a terminal (a disposition
    inherited as ignored would survive the exec, and `ngf` keeps an ignored SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def trial(delay: float, signum: int, out: Path | None = None) -> Trial:
    """Start `ngf run`, signal it ``delay`` seconds later, and wait for it to end.

    With ``out`` the run writes its folder there, and ``delay`` counts from the moment its
    first epoch is recorded (``out/metrics.jsonl`` exists): a signal in mid-training.
    """
    extra = [] if out is None else ["--out", str(out)]
    proc = subprocess.Popen(ngf_command() + RUN + extra, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=environment(), cwd=ROOT, preexec_fn=sigint_at_default)
    deadline = time.monotonic() + SWALLOWED_AFTER
    while out is not None and not (out / "metrics.jsonl").is_file() and proc.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(delay)
    used = cpu_seconds(proc.pid)
    proc.send_signal(signum)
    if not ended(proc):
        proc.kill()
        output, _ = proc.communicate()
        return Trial(delay, signum, None, output.decode(errors="replace"), used)
    output, _ = proc.communicate()
    status = 128 - proc.returncode if proc.returncode < 0 else proc.returncode  # killed by the signal: 128 + n
    return Trial(delay, signum, status, output.decode(errors="replace"), used)


def cpu_seconds(pid: int) -> float | None:
    """The CPU time a process has used (user and system, all its threads), from /proc; None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def ended(proc: subprocess.Popen) -> bool:
    """Whether a signalled process ends before it has worked ``SWALLOWED_AFTER`` CPU seconds more (the
    wall clock where /proc is missing): judged by its own progress, so a busy machine, which only slows
    it, does not make a process that answers its signal look as if it swallowed it."""
    start, wall = cpu_seconds(proc.pid), time.monotonic()
    while proc.poll() is None:
        used = cpu_seconds(proc.pid)
        spent = (used - start) if used is not None and start is not None else time.monotonic() - wall
        if spent > SWALLOWED_AFTER or time.monotonic() - wall > WALL_LIMIT:
            return False
        time.sleep(0.05)
    return True


def moments(count: int, max_delay: float) -> list[tuple[float, int]]:
    """``count`` (delay, signal) pairs, the delays spread evenly over [0, max_delay], the signals alternating."""
    step = max_delay / max(count - 1, 1)
    return [(round(i * step, 3), (signal.SIGINT, signal.SIGTERM)[i % 2]) for i in range(count)]


def run_trials(count: int, max_delay: float, parallel: int, training: int = 0,
               folder: Path | None = None) -> list[Trial]:
    """Every trial of ``moments(count, max_delay)``, ``parallel`` processes at a time, then ``training``
    trials signalled in mid-training (up to 0.5 s after the first epoch), their runs in ``folder``."""
    planned = [(delay, signum, None) for delay, signum in moments(count, max_delay)]
    if training:
        work = Path(folder or tempfile.mkdtemp(prefix="ngf-signals-"))
        planned += [(delay / 10, signum, work / f"run{i}")
                    for i, (delay, signum) in enumerate(moments(training, 5.0))]
    with ThreadPoolExecutor(parallel) as pool:  # the training trials, slowest, start first
        return list(pool.map(lambda m: trial(*m), planned[count:] + planned[:count]))


def describe(t: Trial) -> str:
    """One line about a trial."""
    first = (t.output.strip().splitlines() or [""])[-1][:100]
    return f"{signal.Signals(t.signum).name} at {t.delay:5.2f} s: {t.verdict} (status {t.status}) {first!r}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--max-delay", type=float, default=5.0, help="the latest moment, in seconds")
    parser.add_argument("--parallel", type=int, default=6, help="processes at a time")
    parser.add_argument("--training", type=int, default=6, help="more trials, signalled in mid-training")
    parser.add_argument("--verbose", action="store_true", help="a line for every trial")
    args = parser.parse_args()
    started = time.perf_counter()
    trials = run_trials(args.trials, args.max_delay, args.parallel, args.training)
    for t in trials:
        if args.verbose or t.verdict not in ("clean", BEFORE_MAIN):
            print(describe(t))
    tally = collections.Counter(t.verdict for t in trials)
    statuses = collections.Counter(t.status for t in trials)
    print(f"{len(trials)} trials ({args.trials} over 0–{args.max_delay:g} s of start-up, {args.training} in "
          f"mid-training) in {time.perf_counter() - started:.0f} s: "
          + ", ".join(f"{n} {verdict}" for verdict, n in tally.most_common())
          + "; exit statuses " + ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items(), key=str)))
    return 0 if set(tally) <= {"clean", BEFORE_MAIN} else 1


if __name__ == "__main__":
    sys.exit(main())
