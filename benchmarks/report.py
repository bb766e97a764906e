"""The results as Markdown tables (what docs/benchmarks.md quotes)."""

from __future__ import annotations

from benchmarks.common import FULL_EPOCH


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _mb(value) -> str:
    return "—" if value is None else f"{value:,.0f}"


def header(result: dict) -> str:
    m, s = result["machine"], result["settings"]
    torch = f"torch {m['torch']} on {m.get('torch_device')}, {m.get('torch_threads')} threads" if m["torch"] \
        else "torch not installed"
    load = m.get("load_average")
    load = f", load average {load[0]:.1f} at the start" if load else ""
    return (f"{m['date']} on {m['host']}: {m['device']} ({m['platform']}), {m['cores']} cores{load}; "
            f"Python {m['python']}, jax {m['jax']}, {torch}.\n"
            f"`{m['command']}`: mlp 784-{s.get('mlp_width', 512)}-{s.get('mlp_width', 512)}-10, LeNet-5, "
            f"batch {s['batch_size']}, Adam {s['lr']}, {s['warmup']} warm-up epoch(s) "
            f"then the median of {s['epochs']} timed epochs, contenders of a model interleaved epoch by epoch; "
            f"data: {m.get('data')}.")


def ratios(result: dict) -> str:
    rows = []
    for r in result["ratios"]:
        target = "—" if r["target"] is None else f"≤ {r['target']:.2f}"
        met = "—" if r["met"] is None else ("yes" if r["met"] else "**no**")
        minima = r.get("ratio_of_minima")
        rows.append([r["comparison"], r["model"], r["examples"], f"{r['seconds']:.3f}",
                     f"{r['reference_seconds']:.3f} ({r['reference']})", f"**{r['ratio']:.2f}**",
                     "—" if minima is None else f"{minima:.2f}", target, met])
    return _table(["ratio", "model", "examples/epoch", "s/epoch", "reference s/epoch", "ratio of medians",
                   "ratio of fastest epochs", "target", "met"], rows)


def timings(result: dict) -> str:
    rows = []
    for model, pool in result["pools"].items():
        for spec, c in pool["contenders"].items():
            rows.append([model, c["label"], pool["examples"], f"{c['median']:.3f}", f"{c['min']:.3f}",
                         f"{c['max']:.3f}"])
        rows += [[model, spec, pool["examples"], "failed: " + err, "", ""] for spec, err in pool["errors"].items()]
    return _table(["model", "contender", "examples/epoch", "median s", "min s", "max s"], rows)


def memory(result: dict) -> str:
    rows = []
    idle = {r["spec"].split(":")[0]: r.get("peak_rss_mb") for r in result["memory"] if r["spec"].endswith(":idle")}
    for r in result["memory"]:
        if "error" in r:
            rows.append([r["spec"], "", "failed: " + r["error"], "", ""])
            continue
        base = idle.get("torch" if r["spec"].startswith("torch") else "jax")
        above = "" if base is None or r["spec"].endswith(":idle") else f"{r['peak_rss_mb'] - base:,.0f}"
        rows.append([r["spec"], r["examples"], _mb(r["peak_rss_mb"]), above, _mb(r["device_peak_mb"])])
    return _table(["contender", "examples", "peak RSS MiB", "above its framework's idle MiB",
                   "device peak MiB"], rows)


def scaling(result: dict) -> str:
    parts = []
    for key, what in (("width", "width (two hidden layers, batch fixed)"), ("batch", "batch size (width 512)")):
        rows = result["scaling"][key]
        first = rows[0]
        table = []
        for r in rows:
            scale = FULL_EPOCH / r["examples"] / 1e12  # TFLOP per 60k-example epoch, like the seconds
            per_example = (r["flops_xla"] or r["flops_analytic"]) / r["examples"]
            first_per_example = (first["flops_xla"] or first["flops_analytic"]) / first["examples"]
            table.append([r["label"], f"{r['seconds_full_epoch']:.2f}", f"{r['flops_analytic'] * scale:.3f}",
                          "—" if r["flops_xla"] is None else f"{r['flops_xla'] * scale:.3f}",
                          f"{r['seconds_full_epoch'] / first['seconds_full_epoch']:.2f}",
                          f"{per_example / first_per_example:.2f}", f"{r['gflops_per_s']:.0f}"])
        parts.append(f"By {what}:\n\n" + _table(
            ["point", "s per 60k epoch", "TFLOP/epoch (6·P·N)", "TFLOP/epoch (XLA)", "time ×", "FLOPs ×",
             "GFLOP/s"], table))
    return "\n\n".join(parts)


def render(result: dict) -> str:
    out = [header(result)]
    if result["ratios"]:
        out += ["Ratios (lower is faster for the contender; targets apply to the ratio of medians):",
                ratios(result)]
    if result["pools"]:
        out += ["Seconds per epoch:", timings(result)]
    if "memory" in result:
        out += ["Peak memory, one fresh process per contender (one epoch):", memory(result)]
    if "scaling" in result:
        out += [f"Scaling of ngf bp on mlp ({result['settings']['scaling_examples']} examples per timed epoch, "
                "scaled to 60k):", scaling(result)]
        if result.get("scaling_png"):
            out.append(f"Plot: {result['scaling_png']}")
    if "throughput" in result:
        from benchmarks import throughput
        out.append(throughput.render(result["throughput"], _table))
    return "\n\n".join(out)
