"""An experiment's report: ``results.md``, ``results.csv``, ``curves.png`` (and ``sensitivity-KEY.png``)."""

from __future__ import annotations

from pathlib import Path

from ngf.experiments.plots import curves, sensitivity
from ngf.experiments.results import Result, long_table, markdown, write_csv


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def numeric_keys(runs) -> list[str]:
    """Grid keys whose values are all numbers and that take at least two values."""
    keys = list(dict.fromkeys(k for item in runs for k, _ in item.point))
    found = []
    for key in keys:
        values = {v for item in runs for k, v in item.point if k == key}
        if len(values) > 1 and all(_number(v) is not None for v in values):
            found.append(key)
    return found


def sensitivity_points(runs, summaries, key: str) -> dict:
    """(series, dataset) → [(value of ``key``, final test accuracy)], a series per other grid value."""
    points: dict = {}
    for item, summary in zip(runs, summaries):
        point = dict(item.point)
        series = " ".join([item.config.rule] + [f"{k}={v}" for k, v in item.point if k != key])
        points.setdefault((series, item.dataset), []).append((float(point[key]), summary["test_accuracy"]))
    return points


def write_report(out: Path, runs, summaries: list[dict], command: str = "", console=None) -> list[Result]:
    """Write the tables and the figures of finished ``runs``; return them as ``Result``s."""
    out = Path(out)
    results = [Result(item.label, item.dataset, item.seed, str(item.folder.relative_to(out)), summary)
               for item, summary in zip(runs, summaries)]
    (out / "results.md").write_text(markdown(results, command))
    write_csv(out / "results.csv", results)
    written = [curves(results, out / "curves.png")]
    for key in numeric_keys(runs):
        written.append(sensitivity(sensitivity_points(runs, summaries, key), key, out / f"sensitivity-{key}.png"))
    if console is not None:
        console.print(long_table(results), soft_wrap=True)
        console.print(f"wrote {out}/results.md, {out}/results.csv and " + ", ".join(p.name for p in written))
    return results
