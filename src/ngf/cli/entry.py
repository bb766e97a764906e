"""The ``ngf`` console script: parse the arguments, run the command, turn failures into exit statuses."""

from __future__ import annotations

import shlex
import signal
import sys
from pathlib import Path

from ngf.cli.options import given_options
from ngf.cli.parser import COMMANDS as EXPERIMENT_COMMANDS
from ngf.cli.parser import build_parser
from ngf.core.errors import NgfError, Terminated
from ngf.core.parallel import initialize_distributed
from ngf.runs.files import CONFIG_FILE

EXIT_SIGINT, EXIT_SIGTERM = 130, 143  # 128 + the signal's number, as shells report it


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
    from ngf.cli import (  # imported after parsing so --help stays fast
        commands,
        experiments,
        ui,
    )

    console = ui.make_console()
    try:
        registry = ui.load_and_report(console, args.global_plugin + getattr(args, "plugin", []),
                                      args.global_block_plugin + getattr(args, "block_plugin", []))
        if args.command == "run":
            initialize_distributed()  # multi-host runs: before JAX touches a device
            commands.run_command(args, registry, console)
        elif args.command == "plugins":
            commands.plugins_command(registry, console)
        elif args.command in EXPERIMENT_COMMANDS:
            experiments.command(args, registry, console)
        else:
            commands.list_command(args.command[:-1], registry, console)
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
