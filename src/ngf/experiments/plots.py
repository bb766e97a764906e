"""Figures (matplotlib, Agg backend): training loss, test accuracy and a rule's own metrics per epoch.

One panel column per dataset, one line per variant: the mean over seeds, with a
band of ± one standard deviation where there are several seeds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ngf.experiments.results import Result, group, ordered

PANELS = (("train_loss", "training loss"), ("test_accuracy", "test accuracy"))


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _value(record: dict, key: str):
    """``record[key]``, or for ``rule/NAME`` the rule's own metric NAME (None where it has none)."""
    if key.startswith("rule/"):
        return (record.get("rule_metrics") or {}).get(key[len("rule/"):])
    return record.get(key)


def _curve(runs: list[Result], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Epochs, mean and std of ``key`` over the runs (cut to the shortest history)."""
    n = min(len(r.summary["history"]) for r in runs)
    values = np.array([[_value(h, key) for h in r.summary["history"][:n]] for r in runs], dtype=float)
    return np.arange(1, n + 1), values.mean(0), values.std(0)


def panels(results: list[Result]) -> tuple:
    """The figure's rows: ``PANELS``, then one per metric a rule reported (``rule/NAME``), in order met."""
    names = ordered(name for r in results for record in r.summary.get("history") or ()
                    for name in (record.get("rule_metrics") or {}))
    return PANELS + tuple((f"rule/{name}", f"{name} (rule)") for name in names)


def colours(labels: list[str]) -> dict[str, tuple]:
    """A fixed colour per label, the same in every panel."""
    plt = pyplot()
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    return {label: cmap(i % cmap.N) for i, label in enumerate(labels)}


def curves(results: list[Result], path: Path, title: str = "") -> Path:
    """Write the loss and accuracy curves of ``results`` to ``path`` (PNG)."""
    plt = pyplot()
    datasets = ordered(r.dataset for r in results)
    labels = ordered(r.label for r in results)
    colour, groups = colours(labels), group(results)
    rows = panels(results)
    fig, axes = plt.subplots(len(rows), len(datasets), figsize=(4.8 * len(datasets), 3.2 * len(rows)),
                             squeeze=False, sharex="col")
    for col, dataset in enumerate(datasets):
        for row, (key, name) in enumerate(rows):
            ax = axes[row][col]
            for label in labels:
                # a run that diverged in its first epoch has no history: nothing to draw for it
                runs = [r for r in groups.get((label, dataset), []) if r.summary["history"]
                        and all(_value(h, key) is not None for h in r.summary["history"])]
                if not runs:
                    continue
                x, mean, std = _curve(runs, key)
                ax.plot(x, mean, marker="o", markersize=3, color=colour[label], label=label)
                if len(runs) > 1:
                    ax.fill_between(x, mean - std, mean + std, color=colour[label], alpha=0.2)
            ax.set_ylabel(name)
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title(dataset)
                ax.set_yscale("log")
            if row == len(rows) - 1:
                ax.set_xlabel("epoch")
                ax.xaxis.get_major_locator().set_params(integer=True)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(len(names), 4), fontsize="small", frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.04 + 0.03 * ((len(names) - 1) // 4), 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _save(fig, axes, ylabel: str, title: str, path: Path) -> Path:
    """Label, legend and title a one-row figure, write it to ``path`` and close it."""
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return Path(path)


def _norm_rows(labelled, stage: str) -> dict[str, np.ndarray]:
    """Per label, the geometric mean over seeds of the per-layer norms (0 where any seed has 0)."""
    rows = {}
    for label in ordered(name for name, _ in labelled):
        found = np.array([[np.nan if v is None else v for v in norms[stage]]  # None: a node without weights
                          for name, norms in labelled if name == label and stage in norms], dtype=float)
        if found.size:
            with np.errstate(divide="ignore"):
                rows[label] = np.exp(np.log(found).mean(0))
    return rows


def layer_norms(labelled: list[tuple[str, dict]], path: Path, title: str = "") -> Path:
    """Per-layer update norms (log scale), at initialisation and after training, a line per run label.

    A norm that is exactly zero cannot sit on a log axis: it is drawn as a cross on the
    panel's floor. A node without weights (None) is left out, a gap in the line.
    """
    plt = pyplot()
    stages = [s for s in ("init", "final") if any(s in norms for _, norms in labelled)]
    colour = colours(ordered(label for label, _ in labelled))
    rows = {stage: _norm_rows(labelled, stage) for stage in stages}
    positive = [v for r in rows.values() for values in r.values() for v in values if v > 0]
    floor = min(positive, default=1.0) / 10
    fig, axes = plt.subplots(1, len(stages), figsize=(5.2 * len(stages), 4.2), squeeze=False, sharey=True)
    for ax, stage in zip(axes[0], stages):
        for label, values in rows[stage].items():
            layers = np.arange(1, len(values) + 1)
            ax.plot(layers, np.where(values > 0, values, np.nan), marker="o", markersize=3,
                    color=colour[label], label=label)
            zero = values == 0
            if zero.any():
                ax.scatter(layers[zero], np.full(zero.sum(), floor), marker="x", color=colour[label])
        ax.set_yscale("log")
        ax.set_xlabel("node (1 = input side)")
        ax.set_title(("at initialisation" if stage == "init" else "after training") +
                     (" (× : exactly 0)" if any((v == 0).any() for v in rows[stage].values()) else ""))
        ax.grid(alpha=0.3, which="both")
        ax.xaxis.get_major_locator().set_params(integer=True)
    return _save(fig, axes, "‖update‖ per node", title, path)


def sensitivity(points: dict[tuple[str, str], list[tuple[float, float]]], key: str, path: Path,
                title: str = "") -> Path:
    """Final test accuracy against a swept value: a panel per dataset, a line per series.

    ``points`` maps (series label, dataset) to (value, accuracy) pairs, one per run;
    runs with the same value (seeds) are averaged, with ± one standard deviation as bars.
    """
    plt = pyplot()
    datasets = ordered(d for _, d in points)
    labels = ordered(label for label, _ in points)
    colour = colours(labels)
    values = [x for pairs in points.values() for x, _ in pairs]
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.8 * len(datasets), 4.0), squeeze=False, sharey=True)
    for ax, dataset in zip(axes[0], datasets):
        for label in labels:
            pairs = points.get((label, dataset), [])
            xs = sorted({x for x, _ in pairs})
            if not xs:
                continue
            accs = [[a for x, a in pairs if x == v] for v in xs]
            ax.errorbar(xs, [np.mean(a) for a in accs], yerr=[np.std(a) for a in accs], marker="o",
                        markersize=4, capsize=3, color=colour[label], label=label)
        if min(values) > 0 and max(values) / min(values) >= 100:
            ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.set_title(dataset)
        ax.grid(alpha=0.3)
    return _save(fig, axes, "final test accuracy", title, path)
