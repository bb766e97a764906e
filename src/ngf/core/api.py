"""The Python API: one call builds a run from names or objects and returns its summary."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from ngf.core import atomic, checkpoint, configfile
from ngf.core.alignment import alignment_tracker
from ngf.core.data import DataSplits
from ngf.core.divergence import FIRST_TEST_EXAMPLES, DivergenceCheck
from ngf.core.engine import Engine, choose_steps_per_call
from ngf.core.errors import Diverged, NgfError, unknown_name
from ngf.core.lifecycle import WithHooks
from ngf.core.init import initialise, parse_init
from ngf.core.network import Network
from ngf.core.parallel import DataParallel, device_count
from ngf.core.options import bind_options
from ngf.core.registry import Registry, load_registry
from ngf.core.rule import LearningRule

OPTIMIZERS: dict[str, Callable[[float], optax.GradientTransformation]] = {
    "adam": optax.adam,
    "adamw": optax.adamw,
    "sgd": optax.sgd,
    "momentum": lambda lr: optax.sgd(lr, momentum=0.9),
    "nesterov": lambda lr: optax.sgd(lr, momentum=0.9, nesterov=True),
    "rmsprop": optax.rmsprop,
}


SCHEDULES = ("constant", "cosine")


def make_optimizer(config: "RunConfig", steps_per_epoch: int) -> optax.GradientTransformation:
    """The optax optimiser for a run, with its learning-rate schedule."""
    lr = config.lr
    if config.schedule == "cosine":  # decays from lr to 0 over the whole run
        lr = optax.cosine_decay_schedule(config.lr, config.epochs * steps_per_epoch)
    return OPTIMIZERS[config.optimizer](lr)


@dataclasses.dataclass
class RunConfig:
    """Every option of a run; names refer to registered rules, models and datasets."""

    rule: Any = "lra"  # a registered name or a LearningRule
    model: Any = "mlp"  # a registered name, an NNX module or a model factory
    dataset: Any = "mnist"  # a registered name or a DataSplits
    data_dir: str | None = None
    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    schedule: str = "cosine"
    seed: int = 0
    out: str | None = None
    overwrite: bool = False
    devices: int | None = None  # None: every device JAX sees
    steps_per_call: int | None = None  # None: choose the fast path for the model
    log_csv: str | None = None  # the csv logger plugin writes one row per epoch here
    init: str = "default"  # NAME[:SCALE], see ngf.core.init
    resume: bool = False  # continue from out's checkpoint
    track_alignment: bool = False  # per-layer angle to the bp gradient each epoch, on a fixed batch
    divergence_ratio: float = 1000.0  # a loss above this × max(initial loss, ln C) counts as divergence; 0: off
    rule_opts: dict = dataclasses.field(default_factory=dict)
    model_opts: dict = dataclasses.field(default_factory=dict)

    def validate(self) -> None:
        """Reject values no run could use."""
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise NgfError(f"{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not 0 < self.lr < math.inf:
            raise NgfError(f"lr must be a positive number, got {self.lr!r}")
        for name in ("steps_per_call", "devices"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise NgfError(f"{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not -2 ** 63 <= self.seed < 2 ** 63:
            raise NgfError(f"seed must be an integer of at most 64 bits, got {self.seed!r}")
        ratio = self.divergence_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= math.inf:
            raise NgfError(f"divergence-ratio must be a number ≥ 0 (0 turns the loss bound off), got {ratio!r}")
        for name in ("optimizer", "schedule", "init"):
            if not isinstance(getattr(self, name), str):
                raise NgfError(f"{name} must be a name, got {getattr(self, name)!r}")
        if not isinstance(self.rule, (str, LearningRule)):
            raise NgfError(f"rule must be a registered name or a LearningRule, got {self.rule!r:.80}")
        if not (isinstance(self.model, (str, nnx.Module)) or callable(self.model)):
            raise NgfError(f"model must be a registered name, an NNX module or a factory, got {self.model!r:.80}")
        if not isinstance(self.dataset, (str, DataSplits)):
            raise NgfError(f"dataset must be a registered name or a DataSplits, got {self.dataset!r:.80}")
        for name in ("data_dir", "out", "log_csv"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (str, os.PathLike)) or not str(value).strip()):
                raise NgfError(f"{name.replace('_', '-')} must be a path, got {value!r}")
        for name in ("overwrite", "resume", "track_alignment"):
            if not isinstance(getattr(self, name), bool):
                raise NgfError(f"{name.replace('_', '-')} must be true or false, got {getattr(self, name)!r}")
        for name in ("rule_opts", "model_opts"):
            if not isinstance(getattr(self, name), dict):
                raise NgfError(f"{name} must be a dict of NAME: VALUE, got {getattr(self, name)!r}")
        if self.schedule not in SCHEDULES:
            raise unknown_name("schedule", self.schedule, SCHEDULES)
        if self.optimizer not in OPTIMIZERS:
            raise unknown_name("optimizer", self.optimizer, OPTIMIZERS)
        parse_init(self.init)


class Callbacks:
    """Hooks a caller may override to watch a run; all do nothing by default."""

    def on_start(self, info: dict) -> None:
        """Called once the data, model and rule are ready."""

    def on_progress(self, done: int, total: int) -> None:
        """Called as the steps of an epoch complete (only if ``wants_progress``)."""

    def on_epoch(self, record: dict) -> None:
        """Called with each epoch's metrics."""

    def on_end(self, summary: dict) -> None:
        """Called with the summary once the run has finished."""

    def on_problem(self, message: str) -> None:
        """Called with a one-line message when a plugin fails during the run."""
        warnings.warn(message, RuntimeWarning, stacklevel=2)

    wants_progress = False


def _resolve_rule(config: RunConfig, registry: Registry) -> tuple[LearningRule, str]:
    if not isinstance(config.rule, str):  # a LearningRule object
        return config.rule, getattr(config.rule, "name", "custom")
    entry = registry.get("rule", config.rule)
    opts = bind_options("rule", config.rule, entry.factory, config.rule_opts, skip=())
    return entry.build(LearningRule, **opts), config.rule


def _resolve_data(config: RunConfig, registry: Registry) -> tuple[DataSplits, str]:
    if isinstance(config.dataset, DataSplits):
        return check_splits(config.dataset, "custom"), "custom"
    data = registry.get("dataset", config.dataset).build(DataSplits, config.data_dir)
    return check_splits(data, config.dataset), config.dataset


def check_splits(data: DataSplits, name: str) -> DataSplits:
    """``data`` if its arrays fit together: the same example shape, one integer label per
    example in [0, n_classes), and at least one example in each split."""
    n_classes = data.n_classes
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
        raise NgfError(f"dataset {name!r}: n_classes must be an integer ≥ 2, got {n_classes!r}")
    shapes = []
    for split in ("train", "test"):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        if not hasattr(x, "shape") or not hasattr(y, "shape") or x.ndim < 2 or y.ndim != 1:
            raise NgfError(f"dataset {name!r}: {split} images must be an array [N, ...] and labels [N]")
        if len(x) != len(y) or len(x) == 0:
            raise NgfError(f"dataset {name!r}: {split} images {tuple(x.shape)} and labels {tuple(y.shape)} "
                           "do not match (or are empty)")
        if not jnp.issubdtype(x.dtype, jnp.number) or not jnp.issubdtype(y.dtype, jnp.integer):
            raise NgfError(f"dataset {name!r}: {split} images must be numbers and labels integers, "
                           f"got {x.dtype} and {y.dtype}")
        if y.min() < 0 or y.max() >= n_classes:
            raise NgfError(f"dataset {name!r}: {split} labels must lie in [0, {n_classes}), "
                           f"found {int(y.min())}..{int(y.max())}")
        shapes.append(tuple(x.shape[1:]))
    if shapes[0] != shapes[1]:
        raise NgfError(f"dataset {name!r}: train examples {shapes[0]} and test examples {shapes[1]} differ in shape")
    return data


def _resolve_model(config: RunConfig, data: DataSplits, registry: Registry):
    model, rngs = config.model, nnx.Rngs(config.seed)
    if isinstance(model, nnx.Module):
        return model, type(model).__name__
    if not isinstance(model, str):  # a factory(input_shape, n_classes, *, rngs)
        return model(data.input_shape, data.n_classes, rngs=rngs), getattr(model, "__name__", "custom")
    entry = registry.get("model", model)
    opts = bind_options("model", model, entry.factory, config.model_opts)
    return entry.build(nnx.Module, data.input_shape, data.n_classes, rngs=rngs, **opts), model


OWN_FILES = ("config.toml", "metrics.jsonl", "summary.json", checkpoint.CHECKPOINT)


def _check_out(config: RunConfig) -> None:
    """Refuse an ``out`` that cannot be used, before anything is loaded or written."""
    if config.out is None:
        if config.resume:
            raise NgfError("resume needs the run's folder (out, or ngf run --resume DIR)")
        return
    out = Path(config.out)
    try:
        if out.exists() and not out.is_dir():
            raise NgfError(f"--out {out} exists and is not a folder")
        if config.resume:
            if not out.is_dir():
                raise NgfError(f"cannot resume: {out} does not exist")
            if not any((out / name).is_file() for name in (checkpoint.CHECKPOINT, configfile.CONFIG_FILE)):
                raise NgfError(f"cannot resume: {out} holds no run ({checkpoint.CHECKPOINT} does not exist)")
            checkpoint.check_readable(out)  # before the data and the model are loaded
        elif out.is_dir() and any(out.iterdir()) and not config.overwrite:
            raise NgfError(f"--out {out} already holds files; choose another folder or pass --overwrite")
        for above in out.parents:  # the first folder that exists must be a folder
            if above.exists():
                if not above.is_dir():
                    raise NgfError(f"cannot write to --out {out}: {above} is not a folder")
                break
    except OSError as exc:
        raise NgfError(f"cannot use --out {out}: {exc.strerror or exc}") from None
    _probe(out)


def _probe(out: Path) -> None:
    """Fail now, not after loading the data, if ``out`` cannot be created or written to.

    Creates ``out`` (and missing parents) and a temporary file in it, then removes
    exactly what it created.
    """
    missing = [folder for folder in (out, *out.parents) if not folder.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=".ngf-probe-", dir=out)
        os.close(handle)
        os.unlink(name)
    except OSError as exc:
        raise NgfError(f"cannot write to --out {out}: {exc.strerror or exc}") from None
    finally:
        for folder in missing:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                pass


def _prepare_out(config: RunConfig) -> tuple[Path | None, Path | None]:
    """Create ``out`` (and missing parents) and clear a previous run's files from it.

    Returns ``(out, created)``: ``created`` is the topmost folder this call made, which
    ``_discard`` removes if the run fails before its first epoch. Only ngf's own files
    are removed from an existing folder (``--overwrite``); nothing else in it is touched.
    """
    if config.out is None:
        return None, None
    out = Path(config.out)
    created = None
    for folder in (out, *out.parents):
        if folder.exists():
            break
        created = folder
    try:
        out.mkdir(parents=True, exist_ok=True)
        if not config.resume:
            for name in OWN_FILES:
                for stale in (out / name, out / (name + ".tmp")):
                    if stale.is_file() or stale.is_symlink():
                        stale.unlink()
    except OSError as exc:
        raise NgfError(f"cannot write to --out {out}: {exc.strerror or exc}") from None
    return out, created


def _discard(out: Path | None, created: Path | None, config: RunConfig) -> None:
    """Remove what a run that failed before its first epoch wrote, so nothing looks like a result."""
    if out is None or config.resume or (out / checkpoint.CHECKPOINT).exists():
        return
    for name in OWN_FILES:
        for path in (out / name, out / (name + ".tmp")):
            if path.is_file() or path.is_symlink():
                path.unlink(missing_ok=True)
    if created is not None:  # the folders this run made, deepest first, if nothing else is in them
        for folder in (out, *out.parents):
            try:
                folder.rmdir()
            except OSError:
                break
            if folder == created:
                break


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON to ``path`` via a temporary file and a rename (non-finite numbers as null)."""
    atomic.write_json(path, payload)


def _network(model, data: DataSplits, names: dict) -> tuple[Network, tuple]:
    """The network view of ``model``, once its forward pass is known to fit the data."""
    try:
        net, params = Network.from_model(model, data.input_shape)
        trace = net.trace_shapes(params, batch=2)
    except NgfError:
        raise
    except Exception as exc:
        detail = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise NgfError(f"model {names['model']!r} does not fit dataset {names['dataset']!r} "
                       f"(one example: {tuple(data.input_shape)}): {detail}") from None
    for l, layer in enumerate(trace):  # DESIGN.md §2: f_l keeps h^l's shape, so J^T lands where rules expect
        if layer.pre.shape != layer.out.shape:
            raise NgfError(f"model {names['model']!r}: layer {l + 1}'s activation changes the shape "
                           f"{tuple(layer.pre.shape[1:])} → {tuple(layer.out.shape[1:])}; pooling and flattening "
                           f"belong at the start of the next layer's map (docs/plugins.md)")
    logits = trace[-1].pre
    if logits.shape != (2, data.n_classes):
        raise NgfError(f"model {names['model']!r} gives logits of shape {tuple(logits.shape[1:])} per example; "
                       f"dataset {names['dataset']!r} has {data.n_classes} classes")
    return net, params


def _config_record(config: RunConfig, names: dict) -> dict:
    record = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    record.update(names)
    return json.loads(json.dumps(record, default=str))


def run(config: RunConfig | None = None, *, registry: Registry | None = None,
        callbacks: Callbacks | None = None, **overrides) -> dict:
    """Train and evaluate; return the summary that ``ngf run`` writes to ``summary.json``.

    Keyword ``overrides`` replace fields of ``config`` (e.g. ``epochs=3``). ``rule``,
    ``model`` and ``dataset`` are registered names, or objects: a ``LearningRule``,
    an NNX module or a factory ``(input_shape, n_classes, *, rngs) -> module``, and
    a ``DataSplits``.

    Bad input raises ``NgfError`` before anything is written (an ``out`` folder this
    call created is removed again if the run fails before its first epoch). A run that
    diverges raises ``Diverged`` (an ``NgfError``, exit status 3) carrying its summary
    (``"status": "diverged"``). ``KeyboardInterrupt`` (and ``Terminated``, the CLI's
    SIGTERM) propagates after ``summary.json`` is written with ``"status": "interrupted"``;
    the exception's ``summary`` attribute holds it. A finished run's summary says
    ``"status": "completed"``.
    """
    fields = [f.name for f in dataclasses.fields(RunConfig)]
    for name in overrides:
        if name not in fields:
            raise NgfError(f"unknown run option {name!r}; valid options: {', '.join(fields)}")
    config = dataclasses.replace(config or RunConfig(), **overrides)
    config.validate()
    _check_out(config)
    registry = registry or load_registry()
    callbacks = WithHooks(callbacks or Callbacks(), registry.manager, config)
    learning_rule, rule_name = _resolve_rule(config, registry)
    data, data_name = _resolve_data(config, registry)
    if config.batch_size > len(data.x_train):
        raise NgfError(f"batch-size {config.batch_size} is larger than the {len(data.x_train)} training examples")
    net_model, model_name = _resolve_model(config, data, registry)
    names = {"rule": rule_name, "model": model_name, "dataset": data_name}
    net, params = _network(net_model, data, names)
    record = configfile.resolved(config, registry, names) if config.out is not None else None
    out, created = _prepare_out(config)
    try:
        try:
            if not config.resume:  # a resumed run rewrites it once its checkpoint has been read
                configfile.write(out, config, registry, names, record)
            return _train(config, learning_rule, net, params, net_model, data, out, names, callbacks,
                          lambda: configfile.write(out, config, registry, names, record))
        except OSError as exc:
            where = f" {exc.filename}" if exc.filename else ""
            raise NgfError(f"cannot write to --out {out}:{where} {exc.strerror or exc}") from None
    except (KeyboardInterrupt, Diverged):
        raise
    except BaseException:
        _discard(out, created, config)
        raise


SUMMARY_METRICS = ("train_accuracy", "test_accuracy", "train_loss", "test_loss", "alignment_degrees")


def _summary(config: RunConfig, names: dict, history: list, started: float, status: str,
             last: dict | None = None, **extra) -> dict:
    """The summary of a run that ``status`` (completed, interrupted, diverged) after ``history``."""
    last = last if last is not None else (history[-1] if history else {})
    return {**names, "status": status, "epochs": config.epochs, "epochs_completed": len(history),
            "seed": config.seed, **{k: last[k] for k in SUMMARY_METRICS if k in last}, **extra,
            "epoch_seconds": [r["seconds"] for r in history],
            "wall_seconds": time.perf_counter() - started,
            "config": _config_record(config, names), "history": history}


def _train(config, rule, net: Network, params, model, data: DataSplits, out, names: dict,
           callbacks: Callbacks, write_config=lambda: None) -> dict:
    started = time.perf_counter()
    history: list = []
    try:
        params = initialise(params, config.init, config.seed)
        n_steps = len(data.x_train) // config.batch_size
        per_call = config.steps_per_call or choose_steps_per_call(model, n_steps)
        n_devices = device_count(config.devices)
        engine = Engine(net, rule, make_optimizer(config, n_steps), config.batch_size,
                        len(data.x_train), per_call, DataParallel.over(n_devices) if n_devices > 1 else None)
        x_train, y_train, x_test, y_test = engine.place(tuple(map(jnp.asarray, data[:4])))
        rule_key, data_key = jax.random.split(jax.random.key(config.seed))
        fresh = engine.init(rule_key, params)
        state, history = checkpoint.start(out, fresh, config.resume)
        state = engine.place(state)  # a restored checkpoint arrives on the host
        if config.resume:  # the summary of where it stopped no longer holds; options given now are recorded
            (out / "summary.json").unlink(missing_ok=True)
            write_config()
        # the divergence bound comes from the untrained network, also when resuming (before a step donates it)
        first = engine.evaluate(fresh.params, x_test[:FIRST_TEST_EXAMPLES], y_test[:FIRST_TEST_EXAMPLES])
        guard = DivergenceCheck(first["loss"], data.n_classes, config.divergence_ratio)
        callbacks.on_start({**names, "steps_per_epoch": engine.n_steps, "steps_per_call": engine.steps_per_call,
                            "device": f"{n_devices} × {jax.devices()[0].device_kind}"})
        progress = callbacks.on_progress if callbacks.wants_progress else None
        track = (alignment_tracker(net, rule, x_train[:config.batch_size], y_train[:config.batch_size])
                 if config.track_alignment else None)
        for epoch in range(len(history) + 1, config.epochs + 1):
            t0 = time.perf_counter()
            state, train = engine.train_epoch(state, x_train, y_train, jax.random.fold_in(data_key, epoch), progress)
            seconds = time.perf_counter() - t0  # train_epoch ends by fetching its metrics
            test = engine.evaluate(state.params, x_test, y_test)
            record = {"epoch": epoch, **train, "test_loss": test["loss"], "test_accuracy": test["accuracy"],
                      "seconds": seconds}
            problem = guard.problem(record, state.params)  # one device check per epoch
            if problem is not None:
                _diverged(config, names, history, started, out, record, problem, callbacks)
            if track is not None:  # outside the timed epoch: one jitted call on the first training batch
                record["alignment_degrees"] = track(state)
            checkpoint.save(out, state, history + [record])  # first the checkpoint, then the record
            history.append(record)
            if out is not None:
                atomic.write_jsonl(out / "metrics.jsonl", history)
            callbacks.on_epoch(record)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM through the CLI's handler
        if not history and config.resume:  # stopped before the checkpoint was read
            history = checkpoint.stored_history(out)
        summary = _summary(config, names, history, started, "interrupted")
        if out is not None:
            atomic.write_jsonl(out / "metrics.jsonl", history)
            atomic.write_json(out / "summary.json", summary)
        exc.summary = summary
        raise
    summary = _summary(config, names, history, started, "completed")
    if out is not None:
        atomic.write_json(out / "summary.json", summary)
    callbacks.on_end(summary)
    return summary


def _diverged(config, names, history, started, out, record, problem: str, callbacks) -> None:
    """Write the summary of a run that diverged in ``record``'s epoch and raise ``Diverged``."""
    epoch = record["epoch"]
    summary = _summary(config, names, history, started, "diverged", last=record,
                       diverged_epoch=epoch, diverged_because=problem, diverged_record=record)
    if out is not None:
        atomic.write_json(out / "summary.json", summary)
    callbacks.on_end(summary)
    kept = (f"; kept the checkpoint of epoch {len(history)} in {out}" if out is not None and history
            else "")
    raise Diverged(f"training diverged in epoch {epoch} of {config.epochs}: {problem} "
                   f"(lower --lr?){kept}", atomic.finite_or_none(summary))
