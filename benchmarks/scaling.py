"""How ngf bp's time per epoch grows with the mlp's width and with the batch size, beside its FLOPs.

Analytic FLOPs for dense training: 6 · weights · examples (2 for the forward
product, 4 for the two backward ones; the first layer's input gradient, which
nobody needs, makes it an overcount). XLA's own count for one step
(``cost_analysis``), times the steps of an epoch, is given beside it where the
backend reports one.
"""

from __future__ import annotations

import dataclasses

import jax

from benchmarks import jax_side
from benchmarks.common import FULL_EPOCH, Dataset, Settings, interleave, median


def weight_count(widths: tuple, n_in: int = 784, n_out: int = 10) -> int:
    sizes = (n_in,) + tuple(widths) + (n_out,)
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def xla_step_flops(engine, state, x, y, batch: int) -> float | None:
    """FLOPs of one training step as XLA counts them, or None where it does not say."""
    from ngf.core.engine import make_train_step
    step = jax.jit(make_train_step(engine.net, engine.rule, engine.optimizer))
    try:  # the lowered module's estimate spares a compilation; the compiled one's differs by < 0.1%
        lowered = step.lower(state, x[:batch], y[:batch])
        cost = lowered.cost_analysis() or lowered.compile().cost_analysis()
    except Exception:  # some backends have no cost model
        return None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    flops = (cost or {}).get("flops")
    return float(flops) if flops and flops > 0 else None


def sweep(points: list[tuple[str, dict, int]], data: Dataset, settings: Settings, log) -> list[dict]:
    """Time each (label, model options, batch) point side by side; one row per point."""
    contenders, rows = {}, []
    for label, opts, batch in points:
        s = dataclasses.replace(settings, batch_size=batch)
        engine, state, x, y = jax_side.ngf_engine("bp", "mlp", data, s, **opts)
        n_steps = engine.n_steps
        rows.append({"label": label, "widths": list(opts["widths"]), "batch_size": batch,
                     "examples": n_steps * batch,
                     "flops_analytic": 6.0 * weight_count(opts["widths"]) * n_steps * batch,
                     "flops_xla": None})
        step_flops = xla_step_flops(engine, state, x, y, batch)
        if step_flops is not None:
            rows[-1]["flops_xla"] = step_flops * n_steps
        box = [state]

        def epoch(i, engine=engine, box=box, x=x, y=y):
            box[0], _ = engine.train_epoch(box[0], x, y, jax.random.key(i))

        contenders[label] = epoch
    times = interleave(contenders, settings.warmup, settings.epochs, log)
    for row in rows:
        seconds = median(times[row["label"]])
        flops = row["flops_xla"] or row["flops_analytic"]
        row.update(seconds=seconds, seconds_full_epoch=seconds * FULL_EPOCH / row["examples"],
                   gflops_per_s=flops / seconds / 1e9)
    return rows


def run(data: Dataset, settings: Settings, log=print) -> dict:
    """The width sweep (batch fixed) and the batch sweep (width 512), each interleaved."""
    data = data.take(settings.scaling_examples)
    log(f"scaling: width sweep at batch {settings.batch_size}, {len(data.x)} examples per epoch")
    widths = sweep([(f"width {w}", {"widths": (w, w)}, settings.batch_size) for w in settings.widths],
                   data, settings, log)
    log("scaling: batch sweep at width 512")
    batches = sweep([(f"batch {b}", {"widths": (512, 512)}, b) for b in settings.batches], data, settings, log)
    return {"width": widths, "batch": batches}


def plot(result: dict, path: str, title: str) -> str | None:
    """Two panels, time per epoch against width and against batch, with FLOPs scaled to the first point."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, x_of, xlabel in (
            (axes[0], "width", lambda r: r["widths"][0], "hidden width (two layers)"),
            (axes[1], "batch", lambda r: r["batch_size"], "batch size (width 512)")):
        rows = result[key]
        xs = [x_of(r) for r in rows]
        secs = [r["seconds_full_epoch"] for r in rows]
        flops = [(r["flops_xla"] or r["flops_analytic"]) / r["examples"] for r in rows]  # per example
        ax.plot(xs, secs, "o-", label="ngf bp, s per epoch")
        ax.plot(xs, [secs[0] * f / flops[0] for f in flops], "--", color="grey",
                label="∝ FLOPs (from the first point)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("seconds per 60k-example epoch")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
