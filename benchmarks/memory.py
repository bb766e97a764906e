"""Peak memory of each contender, each in a fresh process of its own.

XLA and PyTorch allocate outside Python's allocator, so tracemalloc sees none of it;
the honest measure is the peak resident set (VmHWM, or ``getrusage`` maxrss) of a process that
does nothing but load the data, build one contender and train it, plus the device's
own peak where the backend keeps one (``memory_stats()['peak_bytes_in_use']`` in JAX,
``torch.cuda.max_memory_allocated()``). An ``idle`` contender (the framework imported,
the data on the device, nothing trained) gives the floor to read the others against.

    python -m benchmarks.memory SPEC [--examples N] [--epochs 1] [--data mnist]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

from benchmarks.common import Settings, load_data

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mb() -> float:
    """This process's peak resident set in MiB.

    On Linux, VmHWM of /proc/self/status: getrusage's maxrss survives exec, so a
    child of a large parent would report at least the parent's size.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def probe(spec: str, settings: Settings, examples: int, epochs: int) -> dict:
    """Train ``spec`` for ``epochs`` in this process; report the peaks."""
    data = load_data(settings.data, examples).take(examples)
    framework = spec.split(":")[0]
    if framework == "torch":
        from benchmarks import torch_side as side
    else:
        from benchmarks import jax_side as side
    if spec.endswith(":idle"):
        if framework == "torch":  # the data on the device, and its max (a uint8 reduction, no wider copy)
            import torch
            torch.as_tensor(data.x).to(side.device_name()).max().item()
        else:
            import jax.numpy as jnp
            int(jnp.max(jnp.asarray(data.x)))
    else:
        run = side.build(spec, data, settings)
        for epoch in range(epochs):
            run(epoch)
    peak = side.device_peak_bytes()
    return {"spec": spec, "examples": len(data.x), "peak_rss_mb": round(peak_rss_mb(), 1),
            "device_peak_mb": None if peak is None else round(peak / 2**20, 1)}


def measure(spec: str, settings: Settings, examples: int, epochs: int = 1, timeout: float = 900) -> dict:
    """Run :func:`probe` in a child process; a failure is reported, not raised."""
    env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    command = [sys.executable, "-m", "benchmarks.memory", spec, "--examples", str(examples),
               "--epochs", str(epochs), "--data", settings.data, "--batch-size", str(settings.batch_size),
               "--threads", str(settings.threads)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"spec": spec, "error": f"timed out after {timeout:.0f}s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"spec": spec, "error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", help="ngf:RULE:MODEL, jax-scan:bp:MODEL, torch:RULE:MODEL, jax:idle or torch:idle")
    parser.add_argument("--examples", type=int, default=60000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--data", default="mnist")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    settings = Settings(data=args.data, batch_size=args.batch_size, threads=args.threads or os.cpu_count())
    print(json.dumps(probe(args.spec, settings, args.examples, args.epochs)))


if __name__ == "__main__":
    main()
