"""The ``ngf`` console script: parse the arguments, run the command, turn failures into exit statuses.

Until its signal handlers are installed this module imports only what installing them
needs (``ngf.cli.signals``): a signal in those first milliseconds meets Python's own
handling, so they are kept short; the parser and everything heavy are imported inside
``_main``.
"""

from __future__ import annotations

import sys

from ngf.cli import supervise
from ngf.cli.signals import BEFORE_THE_RUN, SignalGuard, leave
from ngf.core.errors import NgfError, Terminated

EXIT_SIGINT, EXIT_SIGTERM = 130, 143  # 128 + the signal's number, as shells report it


def main(argv=None) -> int:
    """Entry point of the ``ngf`` console script; returns the exit status.

    SIGINT and SIGTERM end a command with one line and exit status 130 or 143 at any
    moment (``ngf.cli.signals``). As the console script (``argv`` from ``sys.argv``), an
    interrupted command then leaves at once: tearing the interpreter down while JAX was
    stopped midway could crash it.
    """
    console_script = argv is None
    if console_script and supervise.wanted():  # a multi-process run: the work runs in a watched child
        return supervise.run(argv)
    guard = SignalGuard(leave_at_once=console_script).install()
    try:
        status = _guarded(argv, guard)
    except BaseException:
        guard.restore()
        raise
    if not console_script:
        guard.restore()
        return status
    guard.finished()  # the process ends here: a late signal changes nothing
    _skip_last_collection()
    if status in (EXIT_SIGINT, EXIT_SIGTERM):
        leave(status)
    return status


def _skip_last_collection() -> None:
    """Spare the interpreter's last garbage collection the objects alive now (``gc.freeze``).

    At exit, Python's final collection walked every object JAX, Flax and the run had made:
    0.3–0.4 s of a 4.5 s ``ngf run`` (README.md, Start-up). Everything ngf writes is closed
    by now; exit handlers (the loggers' ``close_all``) still run, and objects still die by
    reference count as the modules are cleared.
    """
    import gc

    gc.freeze()


def _guarded(argv, guard: SignalGuard) -> int:
    try:
        return _main(argv, guard)
    except KeyboardInterrupt as exc:  # before the command began
        print(BEFORE_THE_RUN, file=sys.stderr)
        return EXIT_SIGTERM if isinstance(exc, Terminated) else EXIT_SIGINT


def _main(argv, guard: SignalGuard) -> int:
    from ngf.cli.parser import COMMANDS as EXPERIMENT_COMMANDS
    from ngf.cli.parser import parse

    args = parse(argv)  # once: every option, what was typed (args.given) and argv
    from ngf.cli import commands, experiments, ui  # imported after parsing so --help stays fast
    from ngf.core.distributed import initialize_distributed

    console = ui.make_console()
    try:
        registry = ui.load_and_report(console, args.global_plugin + getattr(args, "plugin", []),
                                      args.global_block_plugin + getattr(args, "block_plugin", []))
        guard.started()  # everything is imported: from here a signal raises where it lands
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
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (ngf.cli.signals)
        console.print(f"[bold red]interrupted:[/] {ui.escape(_resume_hint(args, exc))}", highlight=False,
                      soft_wrap=True)
        return EXIT_SIGTERM if isinstance(exc, Terminated) else EXIT_SIGINT
    return 0


def _resume_hint(args, exc: KeyboardInterrupt) -> str:
    """One line: how far the run got and how to go on."""
    import shlex
    from pathlib import Path

    from ngf.runs.files import CONFIG_FILE

    if args.command != "run":
        return "run the same command again to continue (finished runs are kept, the others resume)"
    summary = getattr(exc, "summary", None)
    out = (summary or {}).get("config", {}).get("out") or args.resume or getattr(args, "out", None)
    if (summary or {}).get("status") in ("completed", "diverged"):  # the interruption came in ngf_run_end
        return f"after the run had {summary['status']} (its summary says so); nothing to resume"
    done = (f"after epoch {summary['epochs_completed']} of {summary['epochs']}" if summary
            else "before the run started")
    if not out or summary is None and not (Path(out) / CONFIG_FILE).is_file():
        return f"{done}; nothing to resume"
    if getattr(args, "overwrite", False) and not args.resume and not (summary or {}).get("epochs_completed"):
        return f"{done}; nothing of this run to resume (what {out} held before is kept): run the same command again"
    plugins = [a for name in args.global_plugin + getattr(args, "plugin", []) for a in ("--plugin", name)]
    return f"{done}; resume with: {shlex.join(['ngf', 'run', *plugins, '--resume', str(out)])}"
