"""The ``ngf`` command: parse, call the library, render with rich."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
from pathlib import Path

from ngf.cliconfig import given_options
from ngf.core.configfile import CONFIG_FILE
from ngf.core.errors import NgfError, Terminated
from ngf.experiments.commands import COMMANDS as EXPERIMENT_COMMANDS
from ngf.experiments.commands import add_parsers as add_experiment_parsers
from ngf.core.parallel import initialize_distributed

EXIT_USAGE = 2
EXIT_SIGINT, EXIT_SIGTERM = 130, 143  # 128 + the signal's number, as shells report it


class Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (no usage block) and exit status 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"error: {message} (see `{self.prog} --help`)\n")


def _run_parser(sub) -> None:
    p = sub.add_parser("run", help="train a model with a learning rule")
    p.add_argument("--rule", default="lra", help="learning rule (see `ngf rules`; default lra)")
    p.add_argument("--model", default="mlp", help="model (see `ngf models`; default mlp)")
    p.add_argument("--dataset", default="mnist", help="dataset (see `ngf datasets`; default mnist)")
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
    p.add_argument("--rule-opt", action="append", default=[], metavar="NAME=VALUE",
                   help="rule hyperparameter (repeatable)")
    p.add_argument("--model-opt", action="append", default=[], metavar="NAME=VALUE",
                   help="model option (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    p.add_argument("--log-csv", default=None, metavar="PATH", help="also write one CSV row per epoch to PATH")
    p.add_argument("--track-alignment", action="store_true",
                   help="record each layer's angle to the bp gradient every epoch, on a fixed batch")
    p.add_argument("--schedule", default="cosine", help="learning-rate schedule: cosine or constant")
    p.add_argument("--divergence-ratio", type=float, default=1000.0, metavar="R",
                   help="stop when a loss exceeds R × max(initial loss, ln C) (default 1000; 0: only NaN/inf)")
    p.add_argument("--init", default="default", metavar="NAME[:SCALE]",
                   help="weight initialisation: default, zeros, normal, uniform, glorot, he, lecun, orthogonal...")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="a TOML file of run options; options given here override it")
    p.add_argument("--resume", default=None, metavar="DIR", help="continue the run in DIR from its last checkpoint")
    _plugin_options(p)


def _plugin_options(parser, prefix: str = "") -> None:
    """``--plugin`` and ``--block-plugin``, global (``prefix`` keeps them apart) or per command."""
    parser.add_argument("--plugin", dest=f"{prefix}plugin", action="append", default=[], metavar="MODULE",
                        help="also load this plugin module, installed or not (repeatable)")
    parser.add_argument("--block-plugin", dest=f"{prefix}block_plugin", action="append", default=[],
                        metavar="NAME", help="do not load this plugin (repeatable; or $NGF_BLOCK_PLUGINS=a,b)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``ngf`` command."""
    parser = Parser(prog="ngf", description="Train networks with learning rules other than backprop.")
    _plugin_options(parser, "global_")
    sub = parser.add_subparsers(dest="command", required=True)
    _run_parser(sub)
    for kind in ("rules", "models", "datasets"):
        _plugin_options(sub.add_parser(kind, help=f"list the registered {kind}"))
    _plugin_options(sub.add_parser("plugins", help="list the plugins, their versions and what they register"))
    add_experiment_parsers(sub)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``ngf`` console script; returns the exit status.

    SIGTERM ends a command as Ctrl-C does (exit status 143 rather than 130).
    """
    previous = _handle_sigterm()
    try:
        return _main(argv)
    except KeyboardInterrupt as exc:  # before the command began
        print("interrupted", file=sys.stderr)
        return EXIT_SIGTERM if isinstance(exc, Terminated) else EXIT_SIGINT
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main(argv) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.given, args.argv = given_options(parser, argv), list(sys.argv[1:] if argv is None else argv)
    from ngf import ui  # imported after parsing so --help stays fast

    console = ui.make_console()
    try:
        registry = ui.load_and_report(console, args.global_plugin + getattr(args, "plugin", []),
                                      args.global_block_plugin + getattr(args, "block_plugin", []))
        if args.command == "run":
            initialize_distributed()  # multi-host runs: before JAX touches a device
            ui.run_command(args, registry, console)
        elif args.command == "plugins":
            ui.plugins_command(registry, console)
        elif args.command in EXPERIMENT_COMMANDS:
            ui.experiment_command(args, registry, console)
        else:
            ui.list_command(args.command[:-1], registry, console)
    except NgfError as exc:
        console.print(f"[bold red]error:[/] {ui.escape(str(exc))}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM through _handle_sigterm
        console.print(f"[bold red]interrupted:[/] {ui.escape(_resume_hint(args, exc))}", highlight=False,
                      soft_wrap=True)
        return EXIT_SIGTERM if isinstance(exc, Terminated) else EXIT_SIGINT
    return 0


def _raise_terminated(signum, frame):
    raise Terminated()


def _handle_sigterm():
    """Make SIGTERM end a run like Ctrl-C (summary, exit status 143); returns the old handler."""
    try:
        return signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: leave signals alone
        return None


def _resume_hint(args, exc: KeyboardInterrupt) -> str:
    """One line: how far the run got and how to go on."""
    if args.command != "run":
        return "run the same command again to continue (finished runs are kept, the others resume)"
    summary = getattr(exc, "summary", None)
    out = (summary or {}).get("config", {}).get("out") or args.resume or getattr(args, "out", None)
    done = (f"after epoch {summary['epochs_completed']} of {summary['epochs']}" if summary
            else "before the run started")
    if not out or summary is None and not (Path(out) / CONFIG_FILE).is_file():
        return f"{done}; nothing to resume"
    plugins = [a for name in args.global_plugin + getattr(args, "plugin", []) for a in ("--plugin", name)]
    return f"{done}; resume with: {shlex.join(['ngf', 'run', *plugins, '--resume', str(out)])}"


if __name__ == "__main__":
    sys.exit(main())
