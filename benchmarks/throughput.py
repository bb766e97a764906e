"""The ``throughput`` section: wall-clock seconds to finish one comparison, as a researcher runs it.

A comparison is every rule × seeds 0 and 1, one epoch each, on the same first N training
examples: bp, fa, dfa and lra on the ``mlp`` (8 runs), bp and fa on LeNet-5 (``cnn`` with
``ngf.models.cnn.LENET5``'s options, 4 runs). Each contender is timed as whole processes,
from launch to exit, so that start-up, data loading and compilation count as a user pays
them:

- ngf: one ``ngf compare ... --epochs 1 --quiet`` process each, serial (``--workers 1
  --stack 1``), ``--workers auto``, ``--stack 2``, and both; every one starts with an empty
  persistent compile cache of its own (a cold start: nothing compiled by an earlier
  contender is reused), and writes its runs' folders, results.md and curves.png;
- PyTorch eager: the suite's twins (``benchmarks.torch_side``), one ``python -c`` process
  per run, one after another, each reading the data, training one epoch and evaluating
  the test split as ngf's runs do. The first run is timed at one thread and at every core
  (a probe 3× slower than one thread, and over 60 s, is stopped: it has lost); the faster
  setting trains the rest (the probe's run counts as the first run).

ngf reads the same examples through this module, which is also an ngf plugin: it
registers ``mnist-subset`` (``--dataset-opt examples=N``, ``source=mnist|synthetic``),
the first N training images of the files the PyTorch side reads, and the full test split.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ngf.host.hookspecs import hookimpl

from benchmarks.common import Settings, load_data

ROOT = Path(__file__).resolve().parents[1]
RULES = {"mlp": ("bp", "fa", "dfa", "lra"), "cnn": ("bp", "fa")}
SEEDS = (0, 1)
#: (name, --workers, --stack) of each ngf contender
NGF = (("serial", "1", "1"), ("workers", "auto", "1"), ("stacked", "1", "2"), ("workers + stacked", "auto", "2"))
TORCH_TARGETS = {"mlp": 0.50, "cnn": 0.80}  # ngf best / PyTorch back-to-back (issue 15's acceptance)
SERIAL_TARGETS = {"mlp": 0.60}  # ngf best / ngf serial
TIMEOUT = 3600.0


def mnist_subset(data_dir=None, examples: int = 60000, source: str = "mnist"):
    """The first ``examples`` training images of ``source`` (mnist or synthetic) and its whole test split.

    The same arrays the PyTorch side trains on (``benchmarks.common.load_data``); ``data_dir``
    is ignored: the files are found through ``$NGF_DATA_DIR``, as the suite finds them.
    """
    from ngf.data.splits import DataSplits

    from benchmarks.torch_side import test_split
    train = load_data(source, examples).take(examples)
    return DataSplits(train.x, train.y, *test_split(source), 10)


@hookimpl
def ngf_register_datasets():
    """Register ``mnist-subset``."""
    return {"mnist-subset": mnist_subset}


def _env(cache: str | None = None) -> dict:
    """The children's environment: this checkout importable, JAX not taking a GPU whole, a compile cache."""
    env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    if cache is not None:
        env["NGF_COMPILE_CACHE"] = cache
    return env


def _ngf_executable() -> list[str]:
    """The ``ngf`` command beside this Python, or the same entry point through ``python -c``."""
    script = Path(sys.executable).with_name("ngf")
    return [str(script)] if script.is_file() else [sys.executable, "-c", "from ngf.cli import main; main()"]


def model_options(model: str, settings: Settings) -> list[str]:
    """``--model-opt`` arguments: the mlp at the suite's width, LeNet-5's layout for the cnn."""
    if model == "mlp":
        options = {"widths": (settings.mlp_width, settings.mlp_width), "activation": "relu"}
    else:
        from ngf.models.cnn import LENET5
        options = LENET5
    text = {k: ",".join(map(str, v)) if isinstance(v, (tuple, list)) else str(v) for k, v in options.items()}
    return [a for k, v in text.items() for a in ("--model-opt", f"{k}={v}")]


def ngf_command(model: str, out: str, workers: str, stack: str, examples: int, settings: Settings) -> list[str]:
    """One ``ngf compare`` of the whole comparison."""
    return _ngf_executable() + [
        "compare", "--rules", ",".join(RULES[model]), "--seeds", ",".join(map(str, SEEDS)), "--epochs", "1",
        "--out", out, "--quiet", "--workers", workers, "--stack", stack, "--model", model,
        *model_options(model, settings), "--plugin", "benchmarks.throughput", "--dataset", "mnist-subset",
        "--dataset-opt", f"examples={examples}", "--dataset-opt", f"source={settings.data}",
        "--batch-size", str(settings.batch_size), "--lr", str(settings.lr),
        "--schedule", "constant"]  # the PyTorch twins keep Adam's lr constant; cosine would end at 0 in one epoch


def torch_command(rule: str, model: str, seed: int, threads: int, examples: int, settings: Settings) -> list[str]:
    """One PyTorch run as a process of its own (``benchmarks.torch_side.one_run``)."""
    kwargs = {"rule": rule, "model": model, "data": settings.data, "examples": examples, "seed": seed,
              "threads": threads, "batch_size": settings.batch_size, "lr": settings.lr,
              "mlp_width": settings.mlp_width}
    return [sys.executable, "-c", "import json, sys; from benchmarks.torch_side import one_run; "
            "one_run(**json.loads(sys.argv[1]))", json.dumps(kwargs)]


def timed(command: list[str], env: dict, timeout: float = TIMEOUT) -> tuple[float, str | None, str]:
    """Seconds from launch to exit, the error (the last line of stderr) if it failed, and stdout."""
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)
    except subprocess.TimeoutExpired:
        return time.perf_counter() - start, f"timed out after {timeout:.0f}s", ""
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or done.stdout.strip().splitlines() or ["no output"]
        return seconds, f"exit {done.returncode}: {lines[-1]}", done.stdout
    return seconds, None, done.stdout


def _load() -> float | None:
    """The 1-minute load average, where the platform has one."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def time_ngf(model: str, name: str, workers: str, stack: str, examples: int, settings: Settings, log) -> dict:
    """One ngf contender: its process's wall time, and what its runs' summaries say they did."""
    load = _load()
    with tempfile.TemporaryDirectory(prefix="ngf-throughput-") as tmp:
        out, cache = str(Path(tmp) / "out"), str(Path(tmp) / "jax-cache")
        command = ngf_command(model, out, workers, stack, examples, settings)
        seconds, error, _ = timed(command, _env(cache))
        summaries = [json.loads(p.read_text()) for p in sorted(Path(out).glob("**/summary.json"))]
    done = [s for s in summaries if s.get("status") == "completed"]
    stacked = sum(1 for s in done if (s.get("stack") or {}).get("size", 1) > 1)
    entry = {"label": f"ngf {name} (--workers {workers} --stack {stack})", "seconds": seconds, "load": load,
             "runs": len(done), "stacked_runs": stacked, "error": error,
             "test_accuracy": _mean([s.get("test_accuracy") for s in done]),
             "command": " ".join(["ngf"] + command[len(_ngf_executable()):]).replace(out, "TMP")}
    if not error and len(done) != len(RULES[model]) * len(SEEDS):
        entry["error"] = f"{len(done)} of {len(RULES[model]) * len(SEEDS)} runs completed"
    log(f"  {entry['label']}: {seconds:.1f}s, {stacked}/{len(done)} runs in stacks"
        + (f", {entry['error']}" if entry["error"] else ""))
    return entry


def _mean(values: list) -> float | None:
    """The mean of the values that are there (None where none is)."""
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def time_torch(model: str, examples: int, settings: Settings, log) -> dict:
    """The PyTorch runs one after another, one process each, at the faster of 1 thread and every core."""
    load, env = _load(), _env()
    runs = [(rule, seed) for rule in RULES[model] for seed in SEEDS]
    probe, found = {}, {}
    (rule, seed), failed = runs[0], {"label": "PyTorch eager, back to back", "seconds": None, "load": load}
    for threads in sorted({1, settings.threads}):  # the first run at each thread count
        limit = max(60.0, 3 * min(probe.values())) if probe else TIMEOUT  # a probe 3× slower has lost
        probe[threads], error, stdout = timed(torch_command(rule, model, seed, threads, examples, settings), env,
                                              limit)
        if error and probe[threads] >= limit:
            log(f"  PyTorch {rule} seed {seed}, {threads} thread(s): stopped after {limit:.0f}s")
            continue
        if error:
            log(f"  PyTorch {rule} seed {seed} at {threads} thread(s) failed: {error}")
            return dict(failed, error=error)
        found[threads] = json.loads(stdout.strip().splitlines()[-1])
        log(f"  PyTorch {rule} seed {seed}, {threads} thread(s): {probe[threads]:.1f}s")
    threads = min(found, key=probe.get)
    seconds, accuracies = [probe[threads]], [found[threads]["test_accuracy"]]
    for rule, seed in runs[1:]:
        took, error, stdout = timed(torch_command(rule, model, seed, threads, examples, settings), env)
        if error:
            log(f"  PyTorch {rule} seed {seed} failed: {error}")
            return dict(failed, error=error)
        seconds.append(took)
        accuracies.append(json.loads(stdout.strip().splitlines()[-1])["test_accuracy"])
        log(f"  PyTorch {rule} seed {seed}, {threads} thread(s): {took:.1f}s")
    return {"label": f"PyTorch eager, back to back, {threads} thread(s)", "seconds": sum(seconds),
            "load": load, "runs": len(seconds), "threads": threads, "run_seconds": seconds,
            "probe": {str(k): v for k, v in probe.items()}, "probe_stopped": [str(k) for k in probe if k not in found],
            "test_accuracy": _mean(accuracies), "error": None}


def ratio_rows(model: str, entry: dict) -> list[dict]:
    """ngf's best contender against PyTorch back to back and against ngf serial."""
    timed_ok = {k: c for k, c in entry["contenders"].items() if not c.get("error") and c.get("seconds")}
    ours = [k for k in timed_ok if k.startswith("ngf ")]
    if not ours:
        return []
    best = min(ours, key=lambda k: timed_ok[k]["seconds"])
    rows = []
    for ref, targets in (("torch", TORCH_TARGETS), ("ngf serial", SERIAL_TARGETS)):
        if ref not in timed_ok:
            continue
        ratio = timed_ok[best]["seconds"] / timed_ok[ref]["seconds"]
        target = targets.get(model)
        rows.append({"comparison": f"ngf best / {'PyTorch back-to-back' if ref == 'torch' else 'ngf serial'}",
                     "model": model, "runs": entry["runs"], "examples": entry["examples"],
                     "contender": timed_ok[best]["label"], "reference": timed_ok[ref]["label"],
                     "seconds": timed_ok[best]["seconds"], "reference_seconds": timed_ok[ref]["seconds"],
                     "ratio": ratio, "target": target, "met": None if target is None else ratio <= target})
    return rows


def run(settings: Settings, models: tuple, log) -> dict:
    """The comparison of each model, every contender in turn; what ``--json`` records as ``throughput``."""
    examples = {"mlp": settings.mlp_examples, "cnn": settings.cnn_examples}
    result = {"load_before": _load()}
    for model in models:
        n = examples[model]
        runs = len(RULES[model]) * len(SEEDS)
        log(f"throughput, {model}: {', '.join(RULES[model])} × seeds {SEEDS}, 1 epoch of {n} examples each "
            f"({runs} runs), every contender as whole processes")
        contenders = {}
        for name, workers, stack in NGF:
            contenders[f"ngf {name}"] = time_ngf(model, name, workers, stack, n, settings, log)
        from benchmarks.torch_side import available
        if available():
            contenders["torch"] = time_torch(model, n, settings, log)
        entry = {"runs": runs, "examples": n, "rules": list(RULES[model]), "seeds": list(SEEDS),
                 "contenders": contenders}
        entry["ratios"] = ratio_rows(model, entry)
        result[model] = entry
    result["load_after"] = _load()
    return result


def _notes(c: dict) -> str:
    """How an ngf contender's runs were trained, or the PyTorch probe's seconds per thread count."""
    if "stacked_runs" in c:
        return f"{c['stacked_runs']}/{c['runs']} runs in stacks"
    stopped = c.get("probe_stopped", ())
    return "first run probed at " + ", ".join(f"{k} thread(s): {'> ' * (k in stopped)}{v:.1f}s"
                                              for k, v in c.get("probe", {}).items())


def render(throughput: dict, table) -> str:
    """The ratios and every contender's seconds, as Markdown tables (``table``: report's table maker)."""
    ratio_lines, contender_lines = [], []
    for model, entry in throughput.items():
        if not isinstance(entry, dict):
            continue
        for r in entry["ratios"]:
            target = "—" if r["target"] is None else f"≤ {r['target']:.2f}"
            met = "—" if r["met"] is None else ("yes" if r["met"] else "**no**")
            ratio_lines.append([r["comparison"], model, r["runs"], r["examples"],
                                f"{r['seconds']:.1f} ({r['contender']})", f"{r['reference_seconds']:.1f} "
                                f"({r['reference']})", f"**{r['ratio']:.2f}**", target, met])
        for c in entry["contenders"].values():
            seconds = "failed: " + c["error"] if c.get("error") else f"{c['seconds']:.1f}"
            acc = "—" if c.get("test_accuracy") is None else f"{c['test_accuracy']:.4f}"
            load = "—" if c.get("load") is None else f"{c['load']:.1f}"
            contender_lines.append([model, c["label"], entry["runs"], entry["examples"], seconds, acc, load,
                                    _notes(c)])
    loads = f"load average {throughput.get('load_before')} before, {throughput.get('load_after')} after"
    return "\n\n".join([
        f"Throughput: seconds to finish one comparison, each contender as whole processes ({loads}):",
        table(["ratio", "model", "runs", "examples/run", "ngf best s", "reference s", "ratio", "target", "met"],
              ratio_lines),
        table(["model", "contender", "runs", "examples/run", "seconds", "mean test accuracy", "load at start",
               "notes"], contender_lines)])
