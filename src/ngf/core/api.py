"""The Python API: one call builds a run from names or objects and returns its summary."""

from __future__ import annotations

import dataclasses
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from ngf.core import checkpoint, configfile
from ngf.core.alignment import alignment_tracker
from ngf.core.data import DataSplits
from ngf.core.engine import Engine, choose_steps_per_call
from ngf.core.errors import NgfError, unknown_name
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
    rule_opts: dict = dataclasses.field(default_factory=dict)
    model_opts: dict = dataclasses.field(default_factory=dict)

    def validate(self) -> None:
        """Reject values no run could use."""
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise NgfError(f"{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise NgfError(f"lr must be a positive number, got {self.lr!r}")
        if self.steps_per_call is not None and self.steps_per_call < 1:
            raise NgfError(f"steps-per-call must be a positive integer, got {self.steps_per_call!r}")
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
        return config.dataset, "custom"
    return registry.get("dataset", config.dataset).build(DataSplits, config.data_dir), config.dataset


def _resolve_model(config: RunConfig, data: DataSplits, registry: Registry):
    model, rngs = config.model, nnx.Rngs(config.seed)
    if isinstance(model, nnx.Module):
        return model, type(model).__name__
    if not isinstance(model, str):  # a factory(input_shape, n_classes, *, rngs)
        return model(data.input_shape, data.n_classes, rngs=rngs), getattr(model, "__name__", "custom")
    entry = registry.get("model", model)
    opts = bind_options("model", model, entry.factory, config.model_opts)
    return entry.build(nnx.Module, data.input_shape, data.n_classes, rngs=rngs, **opts), model


def _prepare_out(config: RunConfig) -> Path | None:
    if config.out is None:
        return None
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise NgfError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (config.overwrite or config.resume):
        raise NgfError(f"--out {out} already holds files; choose another folder or pass --overwrite")
    try:
        out.mkdir(parents=True, exist_ok=True)
        for stale in ("metrics.jsonl", "summary.json"):
            (out / stale).unlink(missing_ok=True)
    except OSError as exc:
        raise NgfError(f"cannot write to --out {out}: {exc.strerror}") from None
    return out


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON to ``path`` via a temporary file and a rename."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)


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
    """
    config = dataclasses.replace(config or RunConfig(), **overrides)
    config.validate()
    registry = registry or load_registry()
    callbacks = WithHooks(callbacks or Callbacks(), registry.manager, config)
    learning_rule, rule_name = _resolve_rule(config, registry)
    data, data_name = _resolve_data(config, registry)
    if config.batch_size > len(data.x_train):
        raise NgfError(f"batch-size {config.batch_size} is larger than the {len(data.x_train)} training examples")
    net_model, model_name = _resolve_model(config, data, registry)
    out = _prepare_out(config)
    names = {"rule": rule_name, "model": model_name, "dataset": data_name}
    configfile.write(out, config, registry, names)
    return _train(config, learning_rule, net_model, data, out, names, callbacks)


def _train(config, rule, model, data: DataSplits, out, names: dict, callbacks: Callbacks) -> dict:
    started = time.perf_counter()
    net, params = Network.from_model(model, data.input_shape)
    params = initialise(params, config.init, config.seed)
    n_steps = len(data.x_train) // config.batch_size
    per_call = config.steps_per_call or choose_steps_per_call(model, n_steps)
    n_devices = device_count(config.devices)
    engine = Engine(net, rule, make_optimizer(config, n_steps), config.batch_size,
                    len(data.x_train), per_call, DataParallel.over(n_devices) if n_devices > 1 else None)
    x_train, y_train, x_test, y_test = engine.place(tuple(map(jnp.asarray, data[:4])))
    rule_key, data_key = jax.random.split(jax.random.key(config.seed))
    state, history = checkpoint.start(out, engine.init(rule_key, params), config.resume)
    state = engine.place(state)  # a restored checkpoint arrives on the host
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
        if track is not None:  # outside the timed epoch: one jitted call on the first training batch
            record["alignment_degrees"] = track(state)
        history.append(record)
        if out is not None:
            with open(out / "metrics.jsonl", "a") as handle:
                handle.write(json.dumps(record) + "\n")
        checkpoint.save(out, state, history)
        callbacks.on_epoch(record)
    last = history[-1]
    summary = {**names, "epochs": config.epochs, "seed": config.seed,
               **{k: last[k] for k in ("train_accuracy", "test_accuracy", "train_loss", "test_loss",
                                       "alignment_degrees") if k in last},
               "epoch_seconds": [r["seconds"] for r in history],
               "wall_seconds": time.perf_counter() - started,
               "config": _config_record(config, names), "history": history}
    if out is not None:
        write_json_atomic(out / "summary.json", summary)
    callbacks.on_end(summary)
    return summary
