"""What the CLI shows: progress, per-epoch lines, result and listing tables (rich)."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ngf.cliconfig import config_from_args
from ngf.core.api import Callbacks, run
from ngf.core.options import factory_options
from ngf.core.registry import Registry, load_registry

SKIP = {"rule": (), "model": ("input_shape", "n_classes", "rngs"), "dataset": ()}


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
        self.progress = None

    def on_start(self, info: dict) -> None:
        if not self.quiet:
            self.console.print(f"[bold]ngf[/] {info['rule']} on {info['model']} / {info['dataset']}: "
                               f"{info['steps_per_epoch']} steps per epoch, {info['device']}")

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
                f"epoch {record['epoch']:>3}/{self.epochs}  train loss {record['train_loss']:.4f} "
                f"acc {record['train_accuracy']:.4f}  test loss {record['test_loss']:.4f} "
                f"acc {record['test_accuracy']:.4f}  {record['seconds']:.1f}s")


def results_table(summary: dict) -> Table:
    """The final results table of a run."""
    table = Table(title=f"{summary['rule']} · {summary['model']} · {summary['dataset']}")
    for column in ("split", "accuracy", "loss"):
        table.add_column(column)
    for split in ("train", "test"):
        table.add_row(split, f"{summary[f'{split}_accuracy']:.4f}", f"{summary[f'{split}_loss']:.4f}")
    seconds = summary["epoch_seconds"]
    table.caption = (f"{summary['epochs']} epochs, {sum(seconds) / len(seconds):.2f} s/epoch, "
                     f"{summary['wall_seconds']:.1f} s in all")
    return table


def alignment_table(summary: dict) -> Table:
    """Each node's angle to the bp gradient at the last epoch (``--track-alignment``; — for a node
    without weights, such as a residual block's sum)."""
    table = Table(title="alignment with bp (last epoch, fixed batch)")
    for column in ("node", "angle (degrees)"):
        table.add_column(column)
    for node, angle in enumerate(summary["alignment_degrees"], start=1):
        table.add_row(str(node), "—" if angle is None else f"{angle:.1f}")
    return table


def run_command(args, registry: Registry, console: Console) -> dict:
    """``ngf run``: build the config from the arguments, train, show the results."""
    config = config_from_args(args)
    callbacks = RichCallbacks(console, config.epochs, args.quiet)
    try:
        summary = run(config, registry=registry, callbacks=callbacks)
    finally:  # Ctrl-C or divergence mid-epoch: take the progress bar down before the message
        if callbacks.progress is not None:
            callbacks.progress.stop()
    console.print(results_table(summary))
    if summary.get("alignment_degrees") is not None:
        console.print(alignment_table(summary))
    if config.out:
        console.print(f"wrote {config.out}/summary.json, metrics.jsonl, config.toml and checkpoint.msgpack")
    return summary


def experiment_command(args, registry: Registry, console: Console) -> None:
    """``ngf compare`` / ``sweep`` / ``plot`` / ``norms`` (see ``ngf.experiments.commands``)."""
    from ngf.experiments.commands import command

    command(args, registry, console)


def _format_options(factory, kind: str) -> str:
    options = factory_options(factory, SKIP[kind])
    return "\n".join(f"{o.name}={o.default!r}" + (f"  {o.help}" if o.help else "") for o in options)


def model_structure(factory) -> str:
    """``"9 nodes"`` for a model built with its defaults on 28×28 images, naming atomic or refused layers.

    A layer declared ``atomic`` is trained by backprop inside; a layer with two or more
    unit-mixing maps that is not is refused at run time. A model whose defaults do not
    build on 28×28 images gets an empty string.
    """
    from flax import nnx

    from ngf.core.network import atomic_layers, is_atomic, mixing_maps

    try:
        model = nnx.eval_shape(lambda: factory((28, 28, 1), 10, rngs=nnx.Rngs(0)))
        layers = list(model.layers)
    except Exception:  # noqa: BLE001 - a listing must not fail on one plugin's model
        return ""
    notes = [f"{layer}: trained by backprop inside" for layer in atomic_layers(model)]
    notes += [f"layer {l} ({type(layer).__name__}): refused, {len(mixing_maps(layer))} unit-mixing maps"
              for l, layer in enumerate(layers) if len(mixing_maps(layer)) > 1 and not is_atomic(layer)]
    return "\n".join([f"{len(layers)} nodes"] + notes)


def list_command(kind: str, registry: Registry, console: Console) -> None:
    """``ngf rules`` / ``ngf models`` / ``ngf datasets``: what is registered, by whom."""
    table = Table(title=f"registered {kind}s", show_lines=True)
    columns = ("name", "plugin", "options (defaults)") + (("structure (28×28 input)",) if kind == "model" else ())
    for column in columns:
        table.add_column(column, overflow="fold")
    for name, entry in sorted(registry.table(kind).items()):
        options = "" if kind == "dataset" else _format_options(entry.factory, kind)
        extra = (model_structure(entry.factory),) if kind == "model" else ()
        table.add_row(name, entry.plugin, options, *extra)
    console.print(table)


def plugins_command(registry: Registry, console: Console) -> None:
    """``ngf plugins``: every plugin met, its version, where it came from, what it registered."""
    table = Table(title="plugins")
    for column in ("name", "version", "source", "status", "registers"):
        table.add_column(column, overflow="fold")
    for info in registry.plugins.values():
        table.add_row(info.name, info.version, info.source, info.status,
                      ", ".join(registry.provided_by(info.name)))
    console.print(table)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use the `ngf` command")
