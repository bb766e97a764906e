"""Tables of an experiment's runs: ``results.md`` (mean ± std over seeds) and ``results.csv``."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import NamedTuple

METRICS = ("train_accuracy", "test_accuracy", "train_loss", "test_loss")


class Result(NamedTuple):
    """One finished (or running) run: its variant label, dataset, seed, folder and summary."""

    label: str
    dataset: str
    seed: int
    folder: str
    summary: dict


def group(results: list[Result]) -> dict[tuple[str, str], list[Result]]:
    """Results by (label, dataset), in first-seen order."""
    groups: dict[tuple[str, str], list[Result]] = {}
    for result in results:
        groups.setdefault((result.label, result.dataset), []).append(result)
    return groups


def ordered(values) -> list:
    """Unique values in first-seen order."""
    return list(dict.fromkeys(values))


def mean_std(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    """``"97.12 ± 0.10"`` (sample std) for several values, ``"97.12"`` for one."""
    values = [math.nan if v is None else v * scale for v in values]  # None: a diverged run's lost loss
    mean = sum(values) / len(values)
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def train_seconds(summary: dict) -> float:
    """Seconds spent in the training epochs (without loading, compiling is in epoch 1)."""
    return float(sum(summary["epoch_seconds"]))


def _cell(runs: list[Result], what: str) -> str:
    if what == "time":
        return mean_std([r.summary["wall_seconds"] for r in runs], digits=1)
    return mean_std([r.summary[what] for r in runs], scale=100.0)


def long_table(results: list[Result]) -> str:
    """One row per variant and dataset: accuracies in %, losses, seconds."""
    head = "| variant | dataset | seeds | train acc % | test acc % | train loss | test loss | time (s) |"
    lines = [head, "|" + " --- |" * 8]
    for (label, dataset), runs in group(results).items():
        losses = [mean_std([r.summary[m] for r in runs], digits=4) for m in ("train_loss", "test_loss")]
        diverged = sum(r.summary.get("status") == "diverged" for r in runs)
        label = f"{label} ({diverged} diverged)" if diverged else label
        lines.append(f"| {label} | {dataset} | {len(runs)} | {_cell(runs, 'train_accuracy')} | "
                     f"{_cell(runs, 'test_accuracy')} | {losses[0]} | {losses[1]} | {_cell(runs, 'time')} |")
    return "\n".join(lines)


def poster_table(results: list[Result]) -> str:
    """The poster's shape: a column per variant, rows dataset × (train, test, time)."""
    groups = group(results)
    labels = ordered(r.label for r in results)
    lines = ["| dataset | split | " + " | ".join(labels) + " |", "|" + " --- |" * (2 + len(labels))]
    for dataset in ordered(r.dataset for r in results):
        for what, name in (("train_accuracy", "train %"), ("test_accuracy", "test %"), ("time", "time to execute (s)")):
            cells = [_cell(groups[(label, dataset)], what) if (label, dataset) in groups else "–"
                     for label in labels]
            lines.append(f"| {dataset} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(results: list[Result], command: str = "", title: str = "Results") -> str:
    """The text of ``results.md``."""
    epochs = ordered(r.summary["epochs"] for r in results)
    seeds = ordered(r.seed for r in results)
    parts = [f"# {title}", ""]
    if command:
        parts += ["```bash", command, "```", ""]
    parts += [f"Epochs: {', '.join(map(str, epochs))}. Seeds: {', '.join(map(str, seeds))}. "
              "Accuracies in %, mean ± sample standard deviation over seeds where there are several; "
              "time to execute is the wall-clock time of each run (data loading, compilation, "
              "training and evaluation).", "",
              long_table(results), "", "In the poster's shape:", "", poster_table(results), "",
              "Curves: `curves.png`; every run's files: `<dataset>/<variant>/seed<N>/`.", ""]
    return "\n".join(parts)


def write_csv(path: Path, results: list[Result]) -> None:
    """``results.csv``: one row per run."""
    columns = ["variant", "dataset", "seed", "rule", "model", "epochs", *METRICS,
               "train_seconds", "wall_seconds", "folder"]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for r in results:
            s = r.summary
            writer.writerow([r.label, r.dataset, r.seed, s["rule"], s["model"], s["epochs"],
                             *(s[m] for m in METRICS), f"{train_seconds(s):.3f}",
                             f"{s['wall_seconds']:.3f}", r.folder])
