"""What the CLI shows: the console, warnings, a progress bar, per-epoch lines and result tables (rich)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ngf.host.registry import Registry, load_registry
from ngf.runs.callbacks import Callbacks


def make_console() -> Console:
    """The one console ngf writes to (stderr for errors and progress goes there too)."""
    return Console(stderr=False, highlight=False)


def warn(message: str) -> None:
    """Print a one-line warning on stderr (the message is never read as markup)."""
    Console(stderr=True).print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


def load_and_report(console: Console, plugins=(), blocked=()) -> Registry:
    """Load the plugins (and ``plugins``, less ``blocked``); print one line per plugin that failed."""
    registry = load_registry(plugins, blocked)
    for problem in registry.problems:
        warn(problem)
    return registry


class RichCallbacks(Callbacks):
    """A progress bar over each epoch's steps and a line per epoch."""

    def __init__(self, console: Console, epochs: int, quiet: bool):
        self.console, self.epochs, self.quiet = console, epochs, quiet
        self.wants_progress = not quiet and console.is_terminal
        self.progress, self.member = None, ""

    def on_start(self, info: dict) -> None:
        stack = info.get("stack")  # a run of a stack (--stack): its lines name its seed, as they interleave
        if stack and stack.get("size", 1) > 1:
            self.member = f"seed {info.get('seed')} · "
        if not self.quiet:
            where = (f" (seed {info.get('seed')}, run {stack['index'] + 1} of a stack of {stack['size']})"
                     if self.member else "")
            self.console.print(f"[bold]ngf[/] {info['rule']} on {info['model']} / {info['dataset']}: "
                               f"{info['steps_per_epoch']} steps per epoch, {info['device']}{where}"
                               f"{atomic_text(info)}", soft_wrap=True)

    def on_progress(self, done: int, total: int) -> None:
        if self.progress is None:
            self.progress = Progress(TextColumn("epoch"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), console=self.console, transient=True)
            self.progress.start()
            self.task = self.progress.add_task("train", total=total)
        self.progress.update(self.task, completed=done)

    def on_problem(self, message: str) -> None:
        warn(message)

    def on_epoch(self, record: dict) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        if not self.quiet:
            self.console.print(
                f"{self.member}epoch {record['epoch']:>3}/{self.epochs}  train loss {record['train_loss']:.4f} "
                f"acc {record['train_accuracy']:.4f}  test loss {record['test_loss']:.4f} "
                f"acc {record['test_accuracy']:.4f}  {record['seconds']:.1f}s{rule_metrics_text(record)}",
                soft_wrap=True)


def atomic_text(info: dict) -> str:
    """The start line's note of the nodes trained by backprop inside (``atomic_nodes``), or nothing:
    ``; atomic, trained by backprop inside: layer 1 (Block)``."""
    nodes = info.get("atomic_nodes") or []
    return f"; atomic, trained by backprop inside: {escape(', '.join(nodes))}" if nodes else ""


def rule_metrics_text(record: dict) -> str:
    """The rule's own scalars of an epoch (``rule_metrics``) for the console line: ``  energy 1.23``."""
    return "".join(f"  {name} {value:.4g}" for name, value in (record.get("rule_metrics") or {}).items())


def results_table(summary: dict) -> Table:
    """The final results table of a run."""
    table = Table(title=f"{summary['rule']} · {summary['model']} · {summary['dataset']}")
    for column in ("split", "accuracy", "loss"):
        table.add_column(column)
    for split in ("train", "test"):
        table.add_row(split, f"{summary[f'{split}_accuracy']:.4f}", f"{summary[f'{split}_loss']:.4f}")
    times = epoch_times(summary['epoch_seconds'], summary.get("compile_seconds"))
    table.caption = f"{summary['epochs']} epochs, {times}, {summary['wall_seconds']:.1f} s in all"
    return table


def epoch_times(seconds: list[float], compile_seconds: float | None = None) -> str:
    """``compiled in 1.20 s, then 0.05 s/epoch``: the compilation, timed apart before the first epoch
    (a summary's ``compile_seconds``), and the mean of the epochs.

    A summary without ``compile_seconds`` (written before ngf timed it apart) gives ``first epoch
    2.10 s (compiling), then 0.05 s/epoch``: its first epoch includes the compilation, so the rate
    is the mean of the others.
    """
    if compile_seconds is not None:
        rate = f"{sum(seconds) / len(seconds):.2f} s/epoch" if seconds else "no epoch timed"
        return f"compiled in {compile_seconds:.2f} s, then {rate}"
    if not seconds:
        return "no epoch timed"
    first = f"first epoch {seconds[0]:.2f} s (compiling)"
    if len(seconds) == 1:
        return first
    return f"{first}, then {sum(seconds[1:]) / (len(seconds) - 1):.2f} s/epoch"


def alignment_table(summary: dict) -> Table:
    """Each node's angle to the bp gradient at the last epoch (``--track-alignment``; — for a node
    without weights, such as a residual block's sum)."""
    table = Table(title="alignment with bp (last epoch, fixed batch)")
    for column in ("node", "angle (degrees)"):
        table.add_column(column)
    for node, angle in enumerate(summary["alignment_degrees"], start=1):
        table.add_row(str(node), "—" if angle is None else f"{angle:.1f}")
    return table
