"""The sections, and the ratios they are judged by.

The timing sections (``handwritten``, ``rules``, ``torch``) pool their contenders by
model: every contender of a model trains on the same examples and all of them are
interleaved epoch by epoch in one loop, so one epoch of ngf bp is the reference for
the rules and, beside the same epochs, for PyTorch too. Ratios compare medians (and,
as a check, the fastest epochs).
"""

from __future__ import annotations

import dataclasses
import sys
import time

from ngf.core.engine import PROGRESS_CALLS

from benchmarks import jax_side, memory, scaling, throughput, torch_side
from benchmarks.common import BUILTIN_RULES, Dataset, Settings, interleave, load_data, machine, median

MODELS = ("mlp", "cnn")
TORCH_RULES = ("bp", "fa", "dfa")
RULE_TARGETS = {"fa": 1.30, "dfa": 1.30, "lra": 1.30, "dtp": 2.5, "kp": 1.30, "drtp": 1.30, "pepita": 1.30,
                "ff": 2.0, "fg": 2.0, "local-loss": 2.0, "dkp": 2.0}
TORCH_TARGETS = {"mlp": 0.5, "cnn": 1.0}
HANDWRITTEN_TARGETS = {"mlp": 1.10}
ENGINE_PATHS = ("1", "scan", "epoch")
CONV_PATHS = {"cnn": ("patches",)}  # the default engine path, with convolutions by im2col


STARTED = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def label(spec: str) -> str:
    framework, rule, _ = spec.split(":")
    if framework.startswith("torch@"):
        return f"PyTorch {rule}, {framework.partition('@')[2]} thread(s)"
    return {"ngf": f"ngf {rule}", "torch": f"PyTorch {rule}", "jax-loop": "JAX by hand, step per call",
            "jax-scan": "JAX by hand, epoch in lax.scan", "ngf@1": f"ngf {rule}, step per call",
            "ngf@scan": f"ngf {rule}, lax.scan, {PROGRESS_CALLS} calls", "ngf@epoch": f"ngf {rule}, epoch in one call",
            "ngf@patches": f"ngf {rule}, convolutions by im2col (conv_method=patches)",
            }[framework]


def rules_to_run(settings: Settings) -> tuple:
    registered = jax_side.registry().rules
    wanted = settings.rules or tuple(r for r in BUILTIN_RULES if r in registered)
    missing = [r for r in wanted if r not in registered]
    if missing:
        raise SystemExit(f"unknown rule(s) {', '.join(missing)}; registered: {', '.join(registered)}")
    return tuple(dict.fromkeys(("bp",) + tuple(wanted)))  # bp is every ratio's reference


def pools(settings: Settings, models: tuple, has_torch: bool, on_cpu: bool) -> dict[str, list[str]]:
    """The contenders of each model, from the timing sections asked for."""
    out = {}
    for model in models:
        specs = ["ngf:bp:" + model]
        if "handwritten" in settings.sections:
            specs += [f"jax-loop:bp:{model}", f"jax-scan:bp:{model}"]
        if "rules" in settings.sections:
            specs += [f"ngf:{r}:{model}" for r in rules_to_run(settings)]
        if "paths" in settings.sections:
            specs += [f"ngf@{path}:bp:{model}" for path in ENGINE_PATHS + CONV_PATHS.get(model, ())]
        if "torch" in settings.sections and has_torch:
            specs += [f"ngf:{r}:{model}" for r in TORCH_RULES] + [f"torch:{r}:{model}" for r in TORCH_RULES]
            if on_cpu and settings.threads > 1:  # PyTorch's threads can lose to one on a loaded machine
                specs += [f"torch@1:{r}:{model}" for r in TORCH_RULES]
        if len(specs) > 1:
            out[model] = list(dict.fromkeys(specs))
    return out


def build(spec: str, data: Dataset, settings: Settings):
    side = torch_side if spec.startswith("torch:") else jax_side
    return side.build(spec, data, settings)


def time_pool(model: str, specs: list[str], data: Dataset, settings: Settings) -> dict:
    """Interleave every contender of one model; medians, minima and maxima in seconds per epoch."""
    log(f"{model}: {len(specs)} contenders on {len(data.x)} examples, batch {settings.batch_size}, "
        f"{settings.warmup} warm-up + {settings.epochs} timed epochs each")
    contenders, errors = {}, {}
    for spec in specs:
        try:
            contenders[spec] = build(spec, data, settings)
        except Exception as exc:  # one broken contender should not take the rest down
            errors[spec] = f"{type(exc).__name__}: {exc}"
            log(f"  {spec} could not be built: {errors[spec]}")
    times = interleave(contenders, settings.warmup, settings.epochs, log)
    return {"examples": len(data.x), "errors": errors,
            "contenders": {s: {"label": label(s), "median": median(t), "min": min(t), "max": max(t), "times": t}
                           for s, t in times.items()}}


def ratio_rows(model: str, pool: dict, settings: Settings) -> list[dict]:
    """ngf bp / hand-written, each rule / bp, and ngf / PyTorch, where both sides were timed.

    The ratio is of medians; the ratio of the fastest epochs rides beside it, as a check
    on a loaded machine, where other work only ever adds time.
    """
    timed = pool["contenders"]
    med = {spec: c["median"] for spec, c in timed.items()}
    rows = []

    def add(comparison, spec, ref, target):
        ratio = med[spec] / med[ref]
        rows.append({"comparison": comparison, "model": model, "examples": pool["examples"],
                     "contender": label(spec), "reference": label(ref), "seconds": med[spec],
                     "reference_seconds": med[ref], "ratio": ratio,
                     "ratio_of_minima": timed[spec]["min"] / timed[ref]["min"], "target": target,
                     "met": None if target is None else ratio <= target})

    bp = f"ngf:bp:{model}"
    hand = [s for s in (f"jax-loop:bp:{model}", f"jax-scan:bp:{model}") if s in med]
    if "handwritten" in settings.sections and hand and bp in med:
        add("ngf bp / hand-written JAX + optax", bp, min(hand, key=med.get), HANDWRITTEN_TARGETS.get(model))
    if "rules" in settings.sections and bp in med:
        for rule in rules_to_run(settings)[1:]:
            if f"ngf:{rule}:{model}" in med:
                add(f"{rule} / bp (both ngf)", f"ngf:{rule}:{model}", bp, RULE_TARGETS.get(rule))
    if "paths" in settings.sections and bp in med:
        for path in ENGINE_PATHS + CONV_PATHS.get(model, ()):
            spec = f"ngf@{path}:bp:{model}"
            if spec in med:
                add(f"{label(spec)} / ngf bp, default path", spec, bp, None)
    if "torch" in settings.sections:
        for rule in TORCH_RULES:  # against PyTorch's faster thread setting
            ours, theirs = f"ngf:{rule}:{model}", [s for s in med if s.split(":")[0].startswith("torch")
                                                   and s.endswith(f":{rule}:{model}")]
            if ours in med and theirs:
                add(f"ngf {rule} / PyTorch eager {rule}", ours, min(theirs, key=med.get), TORCH_TARGETS[model])
    return rows


def memory_specs(settings: Settings, models: tuple, has_torch: bool) -> list[tuple[str, str]]:
    """(spec, model) pairs measured by the memory section; quick mode keeps bp and the baselines."""
    rules = ("bp",) if settings.quick else rules_to_run(settings)
    specs = [("jax:idle", "mlp")] + ([("torch:idle", "mlp")] if has_torch else [])
    for model in models:
        specs += [(f"ngf:{r}:{model}", model) for r in rules]
        if not settings.quick:
            specs += [(f"jax-scan:bp:{model}", model)]
        if has_torch:
            specs += [(f"torch:{r}:{model}", model) for r in (("bp",) if settings.quick else TORCH_RULES)]
    return specs


def run(settings: Settings, models: tuple = MODELS) -> dict:
    """Every section asked for; returns the results (what ``--json`` writes)."""
    info = machine()
    has_torch = torch_side.available()
    result = {"machine": info, "settings": dataclasses.asdict(settings), "pools": {}, "ratios": []}
    if has_torch:
        import torch
        torch.set_num_threads(settings.threads)
        info["torch_device"] = torch_side.device_name()
        info["torch_threads"] = torch.get_num_threads()
    elif "torch" in settings.sections or "memory" in settings.sections:
        log("PyTorch is not installed: its comparisons are skipped "
            "(pip install 'torch==2.13.0', the CPU build, or pip install -e '.[bench]')")
    examples = {"mlp": settings.mlp_examples, "cnn": settings.cnn_examples}
    need = max([examples[m] for m in models] + [settings.scaling_examples])
    data = load_data(settings.data, need)
    info["data"] = data.source
    log(f"on {info['device']} ({info['platform']}), jax {info['jax']}, torch {info['torch']}, "
        f"{info['cores']} cores, data: {data.source}")
    for model, specs in pools(settings, models, has_torch, info["platform"] == "cpu").items():
        pool = time_pool(model, specs, data.take(examples[model]), settings)
        result["pools"][model] = pool
        result["ratios"] += ratio_rows(model, pool, settings)
    if "memory" in settings.sections:
        result["memory"] = []
        for spec, model in memory_specs(settings, models, has_torch):
            log(f"memory: {spec} on {examples[model]} examples, in a fresh process")
            result["memory"].append(memory.measure(spec, settings, examples[model]))
    if "scaling" in settings.sections:
        result["scaling"] = scaling.run(data, settings, log)
        if settings.png:
            title = (f"ngf bp on mlp, {info['device']} ({info['platform']}), {info['date'][:10]}; "
                     f"{settings.scaling_examples} examples per timed epoch, scaled to 60k")
            result["scaling_png"] = scaling.plot(result["scaling"], settings.png, title)
    if "throughput" in settings.sections:
        result["throughput"] = throughput.run(settings, models, log)
    return result
