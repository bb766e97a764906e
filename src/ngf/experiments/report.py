"""An experiment's report: ``results.md``, ``results.csv`` and ``curves.png`` in its folder."""

from __future__ import annotations

from pathlib import Path

from ngf.experiments.plots import curves
from ngf.experiments.results import Result, long_table, markdown, write_csv


def write_report(out: Path, runs, summaries: list[dict], command: str = "", console=None) -> list[Result]:
    """Write the tables and the curves of finished ``runs``; return them as ``Result``s."""
    out = Path(out)
    results = [Result(item.label, item.dataset, item.seed, str(item.folder.relative_to(out)), summary)
               for item, summary in zip(runs, summaries)]
    (out / "results.md").write_text(markdown(results, command))
    write_csv(out / "results.csv", results)
    curves(results, out / "curves.png")
    if console is not None:
        console.print(long_table(results), soft_wrap=True)
        console.print(f"wrote {out}/results.md, {out}/results.csv and {out}/curves.png")
    return results
