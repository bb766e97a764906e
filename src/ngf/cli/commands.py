"""``ngf run``, ``ngf rules`` / ``models`` / ``datasets`` and ``ngf plugins``: what each does and shows."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ngf.cli.hints import protocol_hint
from ngf.cli.options import config_from_args
from ngf.cli.ui import RichCallbacks, alignment_table, results_table
from ngf.core.distributed import is_writer
from ngf.data.forms import FORMS
from ngf.host.options import NOT_OPTIONS, factory_options
from ngf.host.registry import Registry
from ngf.runs.api import run

def run_command(args, registry: Registry, console: Console) -> dict:
    """``ngf run``: build the config from the arguments, train, show the results."""
    config = config_from_args(args)
    try:
        epochs = config.run_epochs
    except (OverflowError, ValueError, TypeError):  # --epochs-scale inf or nan: the run refuses it in one line
        epochs = config.epochs
    callbacks = RichCallbacks(console, epochs, args.quiet)
    try:
        summary = run(config, registry=registry, callbacks=callbacks)
    finally:  # Ctrl-C or divergence mid-epoch: take the progress bar down before the message
        if callbacks.progress is not None:
            callbacks.progress.stop()
    console.print(results_table(summary))
    if summary.get("alignment_degrees") is not None:
        console.print(alignment_table(summary))
    if (hint := protocol_hint(config, registry)) is not None:  # docs/reproductions/, ngf.cli.hints
        console.print(hint, soft_wrap=True, highlight=False)
    if config.out and is_writer():  # in a multi-process run, process 0 writes the folder
        console.print(f"wrote {config.out}/summary.json, metrics.jsonl, config.toml and checkpoint.msgpack")
    return summary


def _format_options(factory, kind: str) -> str:
    options = factory_options(factory, NOT_OPTIONS[kind])
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
        extra = (model_structure(entry.factory),) if kind == "model" else ()
        table.add_row(name, entry.plugin, _format_options(entry.factory, kind), *extra)
    if kind == "dataset":  # forms, not names: --dataset hf:OWNER/NAME, disk:PATH, folder:PATH
        for form in FORMS.values():
            table.add_row(form.example, f"ngf (a form: {form.reads})", _format_options(form.loader, kind))
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
