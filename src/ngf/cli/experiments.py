"""``ngf compare``, ``ngf sweep``, ``ngf plot`` and ``ngf norms``: the handlers (parsers: ``ngf.cli.parser``)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from ngf.cli.hints import protocol_hints
from ngf.cli.options import base_record, typed_record
from ngf.cli.ui import RichCallbacks
from ngf.core.errors import NgfError
from ngf.runs.config import RunConfig
from ngf.runs.writable import check_writable_file, writing


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
    from ngf.experiments.plan import parse_grid, plan, split_list
    from ngf.experiments.report import write_report
    from ngf.experiments.runner import execute

    from ngf.experiments.planfile import merged_grid, read_plan

    base = RunConfig(**base_record(args))  # checks --config FILE, whose [plan] is read next
    planned = read_plan(getattr(args, "config", None))  # the file's [plan]; the command line wins
    rules = split_list(args.rules, "--rules") if args.rules else planned.get("rules")
    if rules is None and args.command == "compare":
        raise NgfError("ngf compare needs --rules R1,R2,... (or rules in the config file's [plan] table)")
    rules = rules or [base.rule]
    datasets = split_list(args.datasets, "--datasets") if args.datasets else planned.get("datasets", [base.dataset])
    seeds = split_list(args.seeds, "--seeds", int) if args.seeds else planned.get("seeds", [base.seed])
    grid = merged_grid(planned.get("grid", []), parse_grid(getattr(args, "grid", None)))
    if not grid and args.command == "sweep":
        raise NgfError("ngf sweep needs --grid KEY=V1,V2,... (or a [plan.grid] table in the config file)")
    typed = typed_record(args)  # options typed here win over the file's, its by_rule too
    by_rule = {rule: {k: v for k, v in options.items() if k not in typed}
               for rule, options in planned.get("by_rule", {}).items()}
    runs = plan(base, rules, datasets, seeds, grid, Path(args.out), registry, by_rule)
    held = []  # the experiment folder's lock: one compare or sweep writes it at a time
    failed = True
    try:
        summaries = execute(runs, registry, lambda item: RichCallbacks(console, item.config.run_epochs, args.quiet),
                            executor=(getattr(args, "executor", "local"), getattr(args, "ray_address", None)),
                            overwrite=args.overwrite, report=lambda line: console.print(line, soft_wrap=True),
                            stack=getattr(args, "stack", None),  # --stack (ngf.experiments.stacked)
                            workers=getattr(args, "workers", 1),  # --workers (ngf.experiments.workers)
                            claim=lambda: held.append(claim_folder(Path(args.out))))
        text = "ngf " + shlex.join(getattr(args, "argv", None) or [args.command])
        with writing(f"the tables and curves in {args.out}"):  # the runs are on disk whatever happens here
            results = write_report(Path(args.out), runs, summaries, text, console)
        for line in protocol_hints([item.config for item in runs], registry):  # ngf.cli.hints
            console.print(line, soft_wrap=True, highlight=False)
        failed = False
        return results
    finally:
        for folder_lock, created in held:
            folder_lock.release()
            for folder in created if failed else ():  # refused before any run: the folders it made go
                try:
                    folder.rmdir()
                except OSError:  # something was written there: it stays
                    break


def claim_folder(out: Path) -> tuple:
    """The experiment folder, created if missing, locked for this command (``NgfError`` naming the pid of
    another ngf command that holds it); with the folders this made, innermost first."""
    from ngf.runs.folder import lock

    created = [folder for folder in (out, *out.parents) if not folder.exists()]
    out.mkdir(parents=True, exist_ok=True)
    try:
        return lock(out), created
    except BaseException:
        for folder in created:
            folder.rmdir()
        raise


def plot_command(args, console) -> None:
    """``ngf plot DIR...``: the curves of the runs in the folders."""
    from ngf.experiments.plots import curves
    from ngf.experiments.runs import load_results

    out = check_writable_file(figure_path(args.out, "curves.png"), "--out")  # before the runs are read
    results = load_results(args.dirs)
    with writing(str(out)):
        path = curves(results, out, args.title)
    console.print(f"wrote {path} ({len(results)} runs)")


def norms_command(args, registry, console) -> None:
    """``ngf norms DIR...``: per-layer update norms at initialisation and after training."""
    from ngf.experiments.norms import run_norms
    from ngf.experiments.plots import layer_norms
    from ngf.experiments.runs import load_results

    out = check_writable_file(figure_path(args.out, "norms.png"), "--out")  # before the norms are computed
    if args.batch < 1:  # a negative one would slice off the last examples instead
        raise NgfError(f"--batch must be a positive integer, got {args.batch}")
    results = load_results(args.dirs)
    several = len({r.dataset for r in results}) > 1
    labelled, records = [], []
    for result in results:
        norms = run_norms(Path(result.folder), registry, args.batch)
        labelled.append((f"{result.label} · {result.dataset}" if several else result.label, norms))
        records.append({"label": result.label, "dataset": result.dataset, "seed": result.seed,
                        "folder": result.folder, **norms})
        when = "final" if "final" in norms else "init"
        own = norms.get("rule_params", {}).get(when)
        console.print(f"{result.label} · {result.dataset} · seed {result.seed}: " +
                      " ".join("—" if v is None else f"{v:.1e}" for v in norms[when]) +
                      ("" if own is None else f" · rule's parameters {own:.1e}"))
    with writing(str(out)):
        path = layer_norms(labelled, out, args.title)
        Path(path).with_suffix(".json").write_text(json.dumps(records, indent=1))
    console.print(f"wrote {path} and {Path(path).with_suffix('.json')}")


def figure_path(out: str, example: str) -> Path:
    """The PNG that ``--out`` names, refused if it is a folder (matplotlib would write FOLDER.png beside it)."""
    path = Path(out)
    if path.is_dir():
        raise NgfError(f"--out {path} is a folder; name the PNG to write, e.g. --out {path / example}")
    return path
