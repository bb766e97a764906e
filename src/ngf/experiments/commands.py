"""``ngf compare``, ``ngf sweep``, ``ngf plot`` and ``ngf norms``: parsers and handlers.

``compare`` and ``sweep`` take every option of ``ngf run`` (copied from its parser,
so an option added there is available here too) except the ones they set per run:
``--rules``, ``--datasets`` and ``--seeds`` take comma-separated lists, and ``sweep``
adds ``--grid KEY=V1,V2,...`` (see ``ngf.experiments.plan`` for the keys).
"""

from __future__ import annotations

import argparse
import copy
import shlex
from pathlib import Path

COMMANDS = ("compare", "sweep", "plot", "norms")
SET_PER_RUN = ("rule", "dataset", "seed", "out", "resume")
PLUGIN_OPTIONS = ("plugin", "block_plugin")


def _copy_options(source: argparse.ArgumentParser, target: argparse.ArgumentParser, keep) -> None:
    """Add ``source``'s options whose destinations ``keep`` accepts to ``target``."""
    for action in source._actions:
        if not isinstance(action, argparse._HelpAction) and keep(action.dest):
            target._add_action(copy.copy(action))


def _experiment_parser(sub, name: str, run_parser) -> None:
    sweep = name == "sweep"
    p = sub.add_parser(name, help="every rule × grid point × dataset × seed, with a table and curves" if sweep
                       else "compare rules on datasets: a table and curves like the poster's")
    p.add_argument("--rules", "--rule", default=None, required=not sweep,
                   help="comma-separated rules, e.g. bp,lra,fa,dfa" + ("" if not sweep else " (default: lra)"))
    p.add_argument("--datasets", "--dataset", default=None, help="comma-separated datasets (default mnist)")
    p.add_argument("--seeds", "--seed", default=None, help="comma-separated seeds (default 0)")
    p.add_argument("--out", required=True, help="folder for results.md, results.csv, curves.png and the runs")
    if sweep:
        p.add_argument("--grid", action="append", required=True, metavar="KEY=V1,V2,...",
                       help="values to sweep (repeatable): a run option (lr, batch_size, optimizer, init, "
                            "schedule, ...), rule.NAME or model.NAME, or a plain name of the rule's, "
                            "else the model's, options; ';' separates values that are lists")
    _copy_options(run_parser, p, lambda dest: dest not in SET_PER_RUN)


def _figure_parser(sub, name: str, run_parser) -> None:
    norms = name == "norms"
    p = sub.add_parser(name, help="per-layer update norms of finished runs, as PNG" if norms
                       else "training loss and test accuracy curves of runs, as PNG")
    p.add_argument("dirs", nargs="+", metavar="DIR", help="run folders, or folders holding runs")
    p.add_argument("--out", default=f"{'norms' if norms else 'curves'}.png", help="the PNG to write")
    p.add_argument("--title", default="", help="a title over the figure")
    if norms:
        p.add_argument("--batch", type=int, default=512, help="training examples in the batch (default 512)")
    _copy_options(run_parser, p, lambda dest: dest in PLUGIN_OPTIONS)


def add_parsers(sub) -> None:
    """Add the experiment commands to the ``ngf`` subparsers (after ``run``)."""
    run_parser = sub.choices["run"]
    for name in ("compare", "sweep"):
        _experiment_parser(sub, name, run_parser)
    for name in ("plot", "norms"):
        _figure_parser(sub, name, run_parser)


def command(args, registry, console) -> None:
    """Run the experiment command ``args.command``."""
    if args.command == "plot":
        plot_command(args, console)
    elif args.command == "norms":
        norms_command(args, registry, console)
    else:
        experiment_command(args, registry, console)


def experiment_command(args, registry, console) -> list:
    """``ngf compare`` / ``ngf sweep``: run the plan, then write the tables and the curves."""
    from ngf.cliconfig import base_record
    from ngf.core.api import RunConfig
    from ngf.experiments.plan import parse_grid, plan, split_list
    from ngf.experiments.report import write_report
    from ngf.experiments.runner import execute
    from ngf.ui import RichCallbacks

    base = RunConfig(**base_record(args))
    rules = split_list(args.rules, "--rules") if args.rules else [base.rule]
    datasets = split_list(args.datasets, "--datasets") if args.datasets else [base.dataset]
    seeds = split_list(args.seeds, "--seeds", int) if args.seeds else [base.seed]
    grid = parse_grid(getattr(args, "grid", None))
    runs = plan(base, rules, datasets, seeds, grid, Path(args.out), registry)
    summaries = execute(runs, registry, lambda item: RichCallbacks(console, item.config.epochs, args.quiet),
                        overwrite=args.overwrite, report=console.print)
    text = "ngf " + shlex.join(getattr(args, "argv", None) or [args.command])
    return write_report(Path(args.out), runs, summaries, text, console)


def plot_command(args, console) -> None:
    """``ngf plot DIR...``: the curves of the runs in the folders."""
    from ngf.experiments.plots import curves
    from ngf.experiments.runs import load_results

    results = load_results(args.dirs)
    path = curves(results, Path(args.out), args.title)
    console.print(f"wrote {path} ({len(results)} runs)")


def norms_command(args, registry, console) -> None:
    """``ngf norms DIR...``: per-layer update norms at initialisation and after training."""
    import json

    from ngf.experiments.norms import run_norms
    from ngf.experiments.plots import layer_norms
    from ngf.experiments.runs import load_results

    results = load_results(args.dirs)
    several = len({r.dataset for r in results}) > 1
    labelled, records = [], []
    for result in results:
        norms = run_norms(Path(result.folder), registry, args.batch)
        labelled.append((f"{result.label} · {result.dataset}" if several else result.label, norms))
        records.append({"label": result.label, "dataset": result.dataset, "seed": result.seed,
                        "folder": result.folder, **norms})
        console.print(f"{result.label} · {result.dataset} · seed {result.seed}: " +
                      " ".join("—" if v is None else f"{v:.1e}" for v in norms.get("final", norms["init"])))
    path = layer_norms(labelled, Path(args.out), args.title)
    Path(path).with_suffix(".json").write_text(json.dumps(records, indent=1))
    console.print(f"wrote {path} and {Path(path).with_suffix('.json')}")
