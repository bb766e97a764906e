"""The epoch loop of a run: checkpoints, divergence checks and interruption.

Epoch ``e`` trains on the permutation drawn from ``fold_in(data_key, e)``, is evaluated
on the whole test split, checked for divergence once, checkpointed and only then
recorded, so a kill at any moment leaves a checkpoint and a ``metrics.jsonl`` that agree.
Every file goes through the run's locked ``RunFolder``, claimed before the first one
(``ngf.runs.folder``). The epoch's programs are compiled before the first epoch
(``Engine.compile``, timed apart as the summary's ``compile_seconds``), so each
record's ``seconds`` is the epoch's training alone.
"""

from __future__ import annotations

import time
from typing import Callable, NamedTuple

import jax

from ngf.core.alignment import alignment_tracker
from ngf.core.engine import Engine, choose_steps_per_call
from ngf.core.errors import Diverged
from ngf.core.init import initialise, seed_key
from ngf.core.parallel import DataParallel, device_count
from ngf.runs import atomic, checkpoint, files
from ngf.runs.callbacks import WithHooks
from ngf.runs.config import RunConfig, make_optimizers
from ngf.runs.divergence import FIRST_TEST_EXAMPLES, DivergenceCheck
from ngf.runs.folder import RunFolder
from ngf.runs.resolve import Resolved
from ngf.runs.summary import Clock, summarise


class Setup(NamedTuple):
    """What every epoch of a run uses."""

    engine: Engine
    arrays: tuple  # x_train, y_train, x_test, y_test, on the devices
    val: tuple  # x_val, y_val on the devices (--val-split), or ()
    data_key: jax.Array
    guard: DivergenceCheck
    track: Callable | None  # the alignment tracker (``--track-alignment``)
    n_devices: int


def own_buffers(tree):
    """``tree`` with every array copied into a buffer of its own.

    Every training call donates its state: without the copy a model given to ``ngf.run``
    would lose its arrays, and a rule state holding a parameter would be donated twice. An
    array this process holds whole is copied by a transfer, which compiles nothing (``copy()``
    compiles a program per shape, as it still does for an array spread over processes).
    """
    def own(leaf):
        if not isinstance(leaf, jax.Array):
            return leaf
        return jax.device_put(leaf, may_alias=False) if leaf.is_fully_addressable else leaf.copy()

    return jax.tree.map(own, tree)


def _start(config: RunConfig, run: Resolved, place: RunFolder, clock: Clock):
    """The engine, the data on the devices and the state a run starts from (fresh or restored)."""
    out = place.out
    params = initialise(run.params, config.init, config.seed)
    n_steps = len(run.data.x_train) // config.batch_size
    per_call = config.steps_per_call or choose_steps_per_call(run.model, n_steps)
    n_devices = device_count(config.devices)
    optimizer, rule_optimizer = make_optimizers(config, n_steps, run.rule)
    engine = Engine(run.net, run.rule, optimizer, config.batch_size, len(run.data.x_train), per_call,
                    DataParallel.over(n_devices) if n_devices > 1 else None, rule_optimizer)
    arrays = engine.place(jax.device_put(tuple(run.data[:4])))  # a transfer; jnp.asarray compiled a copy per shape
    val = engine.place(jax.device_put(tuple(run.val)))
    rule_key, data_key = jax.random.split(seed_key(config.seed))
    fresh = engine.init(rule_key, params)
    state, history, clock.earlier = checkpoint.start(out, fresh, config.resume, place.writer, place.identity)
    state = own_buffers(engine.place(state))  # a restored checkpoint arrives on the host
    if config.resume and place.writer:  # the summary of where it stopped no longer holds; the config is rewritten
        files.remove_summary(out)
        place.claim()
    x_test, y_test = arrays[2], arrays[3]
    # the divergence bound comes from the untrained network, also when resuming (before a step donates it)
    first = engine.evaluate(fresh, x_test[:FIRST_TEST_EXAMPLES], y_test[:FIRST_TEST_EXAMPLES])
    guard = DivergenceCheck(first["loss"], run.data.n_classes, config.divergence_ratio)
    track = (alignment_tracker(run.net, run.rule, arrays[0][:config.batch_size], arrays[1][:config.batch_size])
             if config.track_alignment else None)
    return Setup(engine, arrays, val, data_key, guard, track, n_devices), state, history


def _compile(setup: Setup, state) -> float:
    """Compile the epoch's programs for the run's arrays (``Engine.compile``); the seconds it took."""
    x_train, y_train, x_test, y_test = setup.arrays
    return setup.engine.compile(state, x_train, y_train, setup.data_key, (x_test, y_test),
                                *([setup.val] if setup.val else []))


def _epoch(setup: Setup, state, epoch: int, progress) -> tuple[object, dict]:
    """Train one epoch and evaluate it; the record ``metrics.jsonl`` gets (before the checks)."""
    x_train, y_train, x_test, y_test = setup.arrays
    t0 = time.perf_counter()
    state, train = setup.engine.train_epoch(state, x_train, y_train, jax.random.fold_in(setup.data_key, epoch),
                                            progress)
    seconds = time.perf_counter() - t0  # train_epoch ends by fetching its metrics
    test = setup.engine.evaluate(state, x_test, y_test)
    record = {"epoch": epoch, **train, "test_loss": test["loss"], "test_accuracy": test["accuracy"]}
    if setup.val:  # --val-split: the held-out training examples
        held = setup.engine.evaluate(state, *setup.val)
        record.update(val_loss=held["loss"], val_accuracy=held["accuracy"])
    return state, {**record, "seconds": seconds}


def train(config: RunConfig, run: Resolved, place: RunFolder, callbacks: WithHooks) -> dict:
    """Train ``run`` for the epochs ``config`` asks for (those a checkpoint holds are skipped).

    Returns the summary of the completed run; a diverged run raises ``Diverged``, and an
    interrupted one re-raises ``KeyboardInterrupt`` with the summary as its ``summary``.
    """
    clock, out = Clock(), place.out if place.writer else None  # in a multi-process run process 0 writes
    history: list = []
    atomic_nodes = run.atomic_nodes  # trained by backprop inside: named on the start line and in the summary
    try:
        setup, state, history = _start(config, run, place, clock)
        callbacks.on_start({**run.names, "seed": config.seed, "steps_per_epoch": setup.engine.n_steps,
                            "steps_per_call": setup.engine.steps_per_call,
                            "device": f"{setup.n_devices} × {jax.devices()[0].device_kind}",
                            "atomic_nodes": list(atomic_nodes), "history": list(history)})
        progress = callbacks.on_progress if callbacks.wants_progress else None
        clock.compile = _compile(setup, state)  # after on_start: a hook may stop the run before any compiling
        for epoch in range(len(history) + 1, config.run_epochs + 1):
            state, record = _epoch(setup, state, epoch, progress)
            problem = setup.guard.problem(record, (state.params, state.rule_params))  # one device check per epoch
            if problem is not None:
                _diverged(config, run.names, history, clock, place, record, problem, callbacks, atomic_nodes)
            if setup.track is not None:  # outside the timed epoch: one jitted call on the first training batch
                record["alignment_degrees"] = setup.track(state)
            place.claim()  # an --overwrite run's old files go now, as its first checkpoint comes
            checkpoint.save(out, state, history + [record], clock.total(), place.identity)  # the checkpoint, then the record
            history.append(record)
            files.write_metrics(out, history)
            callbacks.on_epoch(record)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM through the CLI's handler
        _interrupted(config, run.names, history, clock, place, exc, atomic_nodes)
        raise
    place.claim()
    summary = summarise(config, run.names, history, clock, "completed", atomic_nodes=atomic_nodes)
    files.write_summary(out, summary)
    callbacks.on_end(summary)
    return summary


def _interrupted(config, names, history, clock: Clock, place: RunFolder, exc: KeyboardInterrupt,
                 atomic_nodes: list) -> None:
    """Write the summary of an interrupted run and attach it to ``exc``.

    An ``--overwrite`` run stopped before its first epoch writes nothing: the old run stays whole.
    """
    if not history and config.resume:  # stopped before the checkpoint was read
        history = checkpoint.stored_history(place.out)
    summary = summarise(config, names, history, clock, "interrupted", atomic_nodes=atomic_nodes)
    if history or config.resume or place.claimed:
        place.claim()
        files.write_metrics(place.writes, history)
        files.write_summary(place.writes, summary)
    exc.summary = summary


def _diverged(config, names, history, clock: Clock, place: RunFolder, record, problem: str, callbacks,
              atomic_nodes: list) -> None:
    """Write the summary of a run that diverged in ``record``'s epoch and raise ``Diverged``."""
    epoch, out = record["epoch"], place.writes
    place.claim()
    summary = summarise(config, names, history, clock, "diverged", last=record, atomic_nodes=atomic_nodes,
                        diverged_epoch=epoch, diverged_because=problem, diverged_record=record)
    files.write_summary(out, summary)
    callbacks.on_end(summary)
    kept = (f"; kept the checkpoint of epoch {len(history)} in {out}" if out is not None and history
            else "")
    raise Diverged(f"training diverged in epoch {epoch} of {config.run_epochs}: {problem} "
                   f"(lower --lr?){kept}", atomic.finite_or_none(summary))
