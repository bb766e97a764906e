"""The ``ngf`` command's arguments: ``run``, the listings, and the experiment commands.

``compare`` and ``sweep`` take every option of ``ngf run`` (copied from its parser,
so an option added there is available here too) except the ones they set per run:
``--rules``, ``--datasets`` and ``--seeds`` take comma-separated lists, and ``sweep``
adds ``--grid KEY=V1,V2,...`` (see ``ngf.experiments.plan`` for the keys).

argv is parsed once (``parse``): argparse sees no option's default, so the namespace it
returns holds what was typed (``given``); the defaults are filled in after.
"""

from __future__ import annotations

import argparse
import copy
import sys

from ngf.host.options import as_number
from ngf.runs.fields import FIELDS_WITH

COMMANDS = ("compare", "sweep", "plot", "norms")  # handled in ngf.cli.experiments
RUN_ONLY_FLAGS = ("resume_if_exists",)  # not a run option: compare and sweep resume by themselves
PLUGIN_OPTIONS = ("plugin", "block_plugin")
EXIT_USAGE = 2
DEFAULT = "ngf_default"  # the attribute where an option keeps its default, which argparse sees suppressed


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's help, with ``%(default)s`` standing for an option's default (kept in ``DEFAULT``)."""

    def _expand_help(self, action):
        if hasattr(action, DEFAULT):
            action = copy.copy(action)
            action.default = getattr(action, DEFAULT)
        return super()._expand_help(action)


class Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (no usage block) and exit status 2."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"error: {message} (see `{self.prog} --help`)\n")


class CommandParser(Parser):
    """The ``ngf`` parser: one parse gives a namespace with every option and ``given``, the destinations
    argv set (with ``command``). argparse sees no defaults (``suppress_defaults``), so what it leaves in the
    namespace was typed; the defaults are filled in after, in the options' order. An append option holds
    the values typed, not its default followed by them (ngf's append options default to ``[]``)."""

    def parse_known_args(self, args=None, namespace=None):
        """argparse's ``parse_known_args``, with ``given`` set and the defaults of the options not typed."""
        namespace, extras = super().parse_known_args(args, namespace)
        typed = dict(vars(namespace))
        values = {}
        for parser in self._parsers(typed.get("command")):
            for action in parser._actions:
                if action.dest in typed or hasattr(action, DEFAULT):  # a subcommand's default wins, as in argparse
                    values[action.dest] = typed[action.dest] if action.dest in typed else _default(parser, action)
        vars(namespace).clear()
        vars(namespace).update({**values, **typed}, given=set(typed))
        return namespace, extras

    def _parsers(self, command) -> list:
        """This parser and the one of ``command``."""
        return [self, *(action.choices[command] for action in self._actions
                        if isinstance(action, argparse._SubParsersAction) and command in action.choices)]


def _default(parser: argparse.ArgumentParser, action: argparse.Action):
    """``action``'s default as argparse sets it: a text converted by its type, a list copied."""
    default = getattr(action, DEFAULT, None)
    if isinstance(default, str):
        return parser._get_value(action, default)
    return list(default) if isinstance(default, list) else default


def suppress_defaults(parser: argparse.ArgumentParser) -> None:
    """Keep each option's default of ``parser`` and its subcommands in ``DEFAULT``, argparse seeing none."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action.choices.values():
                suppress_defaults(choice)
        elif action.default is not argparse.SUPPRESS:
            setattr(action, DEFAULT, action.default)
            action.default = argparse.SUPPRESS


def parse(argv=None) -> argparse.Namespace:
    """``argv`` (default ``sys.argv[1:]``) parsed once: every option, ``given`` (what was typed) and ``argv``."""
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def _run_parser(sub) -> None:
    p = sub.add_parser("run", help="train a model with a learning rule")
    p.add_argument("--rule", default="lra", help="learning rule (see `ngf rules`; default lra)")
    p.add_argument("--model", default="mlp", help="model (see `ngf models`; default mlp)")
    p.add_argument("--dataset", default="mnist",
                   help="dataset (see `ngf datasets`; default mnist), or hf:OWNER/NAME, disk:PATH, folder:PATH")
    p.add_argument("--data-dir", default=None, help="folder holding the dataset's IDX files")
    p.add_argument("--epochs", type=int, default=5, help="epochs (default 5)")
    p.add_argument("--batch-size", type=int, default=64, help="batch size (default 64)")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    p.add_argument("--optimizer", default="adam", help="adam, adamw, sgd, momentum, nesterov, rmsprop")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", default=None, help="folder for metrics.jsonl and summary.json")
    p.add_argument("--overwrite", action="store_true", help="reuse an --out folder that holds files")
    p.add_argument("--devices", type=int, default=None,
                   help="split each batch across this many devices (default: all JAX sees)")
    p.add_argument("--steps-per-call", type=int, default=None,
                   help="training steps per device call (default: the fast path for the model)")
    p.add_argument("--threads", type=int, default=None, metavar="K",
                   help="XLA's CPU threads: run on K of the usable cores (default: all); recorded in config.toml")
    p.add_argument("--rule-opt", action="append", default=[], metavar="NAME=VALUE",
                   help="rule hyperparameter (repeatable)")
    p.add_argument("--model-opt", action="append", default=[], metavar="NAME=VALUE",
                   help="model option (repeatable)")
    p.add_argument("--dataset-opt", action="append", default=[], metavar="NAME=VALUE",
                   help="dataset option (repeatable), e.g. image=img label=fine_label for hf:, disk:, folder:")
    p.add_argument("--log", action="append", default=[], metavar="NAME[:ARG]",
                   help="also log to tensorboard[:DIR], wandb[:PROJECT] or mlflow[:TRACKING_URI] (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    p.add_argument("--no-compile-cache", action="store_true",
                   help="do not keep compiled programs in ngf's cache folder (or $NGF_COMPILE_CACHE=off)")
    p.add_argument("--log-csv", default=None, metavar="PATH", help="also write one CSV row per epoch to PATH")
    p.add_argument("--track-alignment", action="store_true",
                   help="record each layer's angle to the bp gradient every epoch, on a fixed batch")
    p.add_argument("--schedule", default="cosine", help="learning-rate schedule: cosine, constant or multistep")
    _protocol_options(p)
    p.add_argument("--divergence-ratio", type=float, default=1000.0, metavar="R",
                   help="stop when a loss exceeds R × max(initial loss, ln C) (default 1000; 0: only NaN/inf)")
    p.add_argument("--init", default="default", metavar="NAME[:SCALE]",
                   help="weight initialisation: default, zeros, normal, uniform, glorot, he, lecun, orthogonal...")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="a TOML file of run options; options given here override it")
    p.add_argument("--resume", default=None, metavar="DIR", help="continue the run in DIR from its last checkpoint")
    p.add_argument("--resume-if-exists", action="store_true",
                   help="with --out DIR: resume the run in DIR if it holds one (same options), else start it; "
                        "repeat the same command after a preemption")
    _plugin_options(p)


def _protocol_options(p) -> None:
    """A paper's protocol (ngf.runs.protocol): step schedule, length, weight decay, momentum, split, padding, loss."""
    p.add_argument("--milestones", type=_epochs_list, default=(), metavar="E1,E2,...",
                   help="with --schedule multistep: lr × gamma after each of these epochs")
    p.add_argument("--gamma", type=float, default=0.1, help="multistep's factor at each milestone (default 0.1; --schedule multistep only)")
    p.add_argument("--epochs-scale", type=float, default=1.0, metavar="F",
                   help="train round(F × epochs) epochs, milestones scaled alike (default 1)")
    p.add_argument("--weight-decay", type=float, default=0.0, metavar="W", help="weight decay λ (default 0)")
    p.add_argument("--weight-decay-mode", default="coupled",
                   help="coupled (L2 added before the optimiser, as SGD's) or decoupled (AdamW's); default coupled")
    p.add_argument("--momentum", type=float, default=None, metavar="M",
                   help="momentum of sgd, momentum, nesterov or rmsprop (default: the optimiser's own)")
    p.add_argument("--val-split", type=int, default=0, metavar="N",
                   help="hold out N training examples (seeded) for val metrics and best_epoch (default 0)")
    p.add_argument("--pad-to", type=_size_text, default=None, metavar="S", help="zero-pad the images to S×S, centred")
    p.add_argument("--loss", default="ce", help="task loss: ce, mse (one-hot targets) or bce (sigmoid outputs)")


def _size_text(text: str):
    """``--pad-to``: an integer, else the number or text as given, for the run's one message on sizes
    (``pad-to must be a positive integer ...``, the same for 0, -3 and 30.0)."""
    return as_number(text)


def _epochs_list(text: str) -> tuple:
    """``"50,75"`` → ``(50, 75)`` (checked further by the run: increasing, positive, ≤ epochs)."""
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects comma-separated epochs, e.g. 50,75; got {text!r}") from None


def _plugin_options(parser, prefix: str = "") -> None:
    """``--plugin`` and ``--block-plugin``, global (``prefix`` keeps them apart) or per command."""
    parser.add_argument("--plugin", dest=f"{prefix}plugin", action="append", default=[], metavar="MODULE",
                        help="also load this plugin module, installed or not (repeatable)")
    parser.add_argument("--block-plugin", dest=f"{prefix}block_plugin", action="append", default=[],
                        metavar="NAME", help="do not load this plugin (repeatable; or $NGF_BLOCK_PLUGINS=a,b)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``ngf`` command; its namespaces carry ``given`` (``CommandParser``)."""
    parser = CommandParser(prog="ngf", description="Train networks with learning rules other than backprop.")
    _plugin_options(parser, "global_")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    _run_parser(sub)
    for kind in ("rules", "models", "datasets"):
        _plugin_options(sub.add_parser(kind, help=f"list the registered {kind}"))
    _plugin_options(sub.add_parser("plugins", help="list the plugins, their versions and what they register"))
    add_experiment_parsers(sub)
    suppress_defaults(parser)
    return parser


def _copy_options(source: argparse.ArgumentParser, target: argparse.ArgumentParser, keep) -> None:
    """Add ``source``'s options whose destinations ``keep`` accepts to ``target``."""
    for action in source._actions:
        if not isinstance(action, argparse._HelpAction) and keep(action.dest):
            target._add_action(copy.copy(action))


def _experiment_parser(sub, name: str, run_parser) -> None:
    sweep = name == "sweep"
    p = sub.add_parser(name, help="every rule × grid point × dataset × seed, with a table and curves" if sweep
                       else "compare rules on datasets: a table and curves like the poster's")
    p.add_argument("--rules", "--rule", default=None,
                   help="comma-separated rules, e.g. bp,lra,fa,dfa" + (" (default: lra)" if sweep else "")
                   + "; or rules in the --config file's [plan] table")
    p.add_argument("--datasets", "--dataset", default=None, help="comma-separated datasets (default mnist)")
    p.add_argument("--seeds", "--seed", default=None, help="comma-separated seeds (default 0)")
    p.add_argument("--out", required=True, help="folder for results.md, results.csv, curves.png and the runs")
    if sweep:
        p.add_argument("--grid", action="append", metavar="KEY=V1,V2,...",
                       help="values to sweep (repeatable): a run option (lr, batch_size, optimizer, init, "
                            "schedule, ...), rule.NAME or model.NAME, or a plain name of the rule's, "
                            "else the model's, options; ';' separates values that are lists")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="where the runs train: local (one after another, here) or ray (as Ray tasks; "
                        "pip install 'ngf[ray]')")
    p.add_argument("--ray-address", default=None, metavar="ADDRESS",
                   help="with --executor ray: the Ray cluster to use (default: start a local Ray instance)")
    p.add_argument("--workers", type=_workers, default=1, metavar="N|auto",
                   help="train N runs at once, each in its own process on its share of the cores "
                        "(auto: one per usable core, at most one per run; default 1: one after another, here)")
    p.add_argument("--stack", type=int, default=None, metavar="N",  # ngf.experiments.stacked
                   help="train up to N runs that differ only in seed and lr together, as one vmapped program "
                        "(1: each alone; default: 1 on a CPU, where stacking was measured slower, 16 on a GPU)")
    left_out = (*FIELDS_WITH["set_per_run"], *RUN_ONLY_FLAGS)  # what they set per run, and what they do alone
    _copy_options(run_parser, p, lambda dest: dest not in left_out)


def _workers(text: str):
    """``--workers``: a positive integer, or ``auto`` (``ngf.experiments.workers.worker_count``)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expects a positive integer or auto, got {text!r}")
    return value


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


def add_experiment_parsers(sub) -> None:
    """Add the experiment commands to the ``ngf`` subparsers (after ``run``)."""
    run_parser = sub.choices["run"]
    for name in ("compare", "sweep"):
        _experiment_parser(sub, name, run_parser)
    for name in ("plot", "norms"):
        _figure_parser(sub, name, run_parser)
