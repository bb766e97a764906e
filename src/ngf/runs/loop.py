"""The epoch loop: members trained together, each checked, checkpointed and recorded in its own folder.

A lone run (``ngf.run``) is a list of one member; a stack (``ngf.runs.stacked``) is
several that differ only in seed and lr. ``run_members`` opens the members
(``ngf.runs.members``), trains them and lets go of their folders. The loop drives an
engine through an adapter with one interface (``Lone``: the plain ``Engine``, on one
device or several; ``ngf.runs.stacked.Stack``: ``StackedEngine``, one vmapped program
over the members' states).

Epoch ``e`` trains each member on the permutation drawn from ``fold_in(data_key, e)``
(its own key), is evaluated on the whole test split, checked for divergence once,
checkpointed and only then recorded, so a kill at any moment leaves a checkpoint and a
``metrics.jsonl`` that agree. A member that diverges ends alone; the others go on
without it. An interruption writes every unfinished member's interrupted summary. Every
file goes through the member's locked ``RunFolder``, claimed before the first one
(``ngf.runs.folder``). The epoch's programs are compiled before the first epoch, after
the members' ``on_start`` (timed apart as the summary's ``compile_seconds``), so each
record's ``seconds`` is the epoch's training alone.
"""

from __future__ import annotations

import time

import jax

from ngf.core.alignment import alignment_tracker
from ngf.core.engine import Engine, choose_steps_per_call
from ngf.core.init import initialise, seed_key
from ngf.core.parallel import DataParallel, device_count
from ngf.runs import checkpoint, files
from ngf.runs.config import RunConfig, make_optimizers
from ngf.runs.divergence import FIRST_TEST_EXAMPLES, DivergenceCheck
from ngf.runs.members import Member, interrupted, open_member
from ngf.runs.resolve import Resolved


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


def make_engine(config: RunConfig, run: Resolved, parallel: DataParallel | None = None) -> Engine:
    """The engine of ``config``'s steps and optimisers for ``run``'s network, rule and data."""
    n_steps = len(run.data.x_train) // config.batch_size
    per_call = config.steps_per_call or choose_steps_per_call(run.model, n_steps)
    optimizer, rule_optimizer = make_optimizers(config, n_steps, run.rule)
    return Engine(run.net, run.rule, optimizer, config.batch_size, len(run.data.x_train), per_call, parallel,
                  rule_optimizer)


class Lone:
    """The plain ``Engine`` as the loop drives it: one member, on one device or several (``--devices``).

    ``engine`` builds and evaluates each member's fresh state; ``arrays`` are the data on
    the devices, ``val`` the held-out examples (``--val-split``) or (), ``track`` the
    alignment tracker (``--track-alignment``) or None.
    """

    stacked = False  # whether a member's summary and on_start's info record its stack

    def __init__(self, members: list[Member], run: Resolved):
        config = members[0].config
        n_devices = device_count(config.devices)
        self.engine = make_engine(self.engine_config(members), run,
                                  DataParallel.over(n_devices) if n_devices > 1 else None)
        self.arrays = self.engine.place(jax.device_put(tuple(run.data[:4])))  # a transfer: compiles nothing
        self.val = self.engine.place(jax.device_put(tuple(run.val)))
        first = (self.arrays[0][:config.batch_size], self.arrays[1][:config.batch_size])
        self.track = alignment_tracker(run.net, run.rule, *first) if config.track_alignment else None
        self.device = f"{n_devices} × {jax.devices()[0].device_kind}"

    def engine_config(self, members: list[Member]) -> RunConfig:
        """The options the engine is built from: the member's."""
        return members[0].config

    def join(self, members: list[Member], states: list):
        """The state the engine trains: the member's, in buffers of its own on the engine's devices."""
        return own_buffers(self.engine.place(states[0]))  # a restored checkpoint arrives on the host

    def compile(self, members: list[Member], state) -> float:
        """Compile the epoch's programs for the run's arrays (``Engine.compile``); the seconds it took."""
        x_train, y_train, x_test, y_test = self.arrays
        return self.engine.compile(state, x_train, y_train, members[0].data_key, (x_test, y_test),
                                   *([self.val] if self.val else []))

    def train_epoch(self, members: list[Member], state, epoch: int, progress):
        """Train epoch ``epoch``; the state and the member's ``[{"train_loss", "train_accuracy"...}]``."""
        key = jax.random.fold_in(members[0].data_key, epoch)
        state, train = self.engine.train_epoch(state, self.arrays[0], self.arrays[1], key, progress)
        return state, [train]

    def evaluate(self, state, data_x, data_y) -> list[dict]:
        """The member's mean loss and accuracy over a dataset, in a list of one."""
        return [self.engine.evaluate(state, data_x, data_y)]

    def split(self, state) -> list:
        """Each member's state: the one state."""
        return [state]

    def keep(self, state, kept: list[int]):
        """The state of the members ``kept``: the one member's."""
        return state


def run_members(configs: list[RunConfig], registry, callbacks: list, adapter_type=Lone,
                labels: dict | None = None) -> list[Member]:
    """Open the runs ``configs`` and train them together through ``adapter_type``; each member ends with its summary.

    Returns the members: ``member.summary`` is what ``ngf.run`` returns (or carries, for
    a diverged member, whose ``problem`` is ``Diverged``'s message). Bad input raises
    ``NgfError`` before anything trains; an interruption re-raises ``KeyboardInterrupt``
    after every member's interrupted summary is written (``exc.summary``, ``exc.summaries``).
    ``labels`` name objects of the Python API. Every folder's lock goes last, after any
    cleaning of what its run wrote: a member stopped before its first file leaves no folder.
    """
    members, run, error = [], None, True
    try:
        for index, (config, hooks) in enumerate(zip(configs, callbacks)):
            stack = {"size": len(configs), "index": index} if adapter_type.stacked else None
            member, resolved = open_member(config, registry, hooks, labels, stack)
            members.append(member)
            run = run or resolved  # the rule, data and model of the first member serve them all
        train(members, run, adapter_type)
        error = False
        return members
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM through the CLI's handler
        interrupted(members, exc)
        error = False
        raise
    finally:
        for member in members:
            member.place.close(error or not member.place.claimed)


def _start(member: Member, adapter: Lone, n_classes: int):
    """The state ``member`` starts from (fresh, or restored from its checkpoint); sets its keys and guard."""
    config, place, engine = member.config, member.place, adapter.engine
    params = initialise(member.params, config.init, config.seed)
    rule_key, member.data_key = jax.random.split(seed_key(config.seed))
    fresh = engine.init(rule_key, params)
    state, member.history, member.clock.earlier = checkpoint.start(place.out, fresh, config.resume, place.writer,
                                                                   place.restores)
    if config.resume and place.writer:  # the summary of where it stopped no longer holds; the config is rewritten
        files.remove_summary(place.out)
        place.claim()
    x_test, y_test = adapter.arrays[2], adapter.arrays[3]
    # the divergence bound comes from the untrained network, also when resuming (before a step donates it)
    first = engine.evaluate(fresh, x_test[:FIRST_TEST_EXAMPLES], y_test[:FIRST_TEST_EXAMPLES])
    member.guard = DivergenceCheck(first["loss"], n_classes, config.divergence_ratio)
    return state


def _compile(adapter: Lone, members: list[Member], state) -> float:
    """Compile the epoch's programs before the first epoch; the seconds it took."""
    return adapter.compile(members, state)


def train(members: list[Member], run: Resolved, adapter_type=Lone) -> None:
    """Train the opened ``members`` (``run``'s rule, data and model) to their last epoch; each ends with its
    ``summary``. Those a checkpoint holds are skipped: members start from the same epoch."""
    adapter = adapter_type(members, run)
    state = adapter.join(members, [_start(member, adapter, run.data.n_classes) for member in members])
    for member in members:
        member.callbacks.on_start(member.start_info(adapter.engine, adapter.device))
    seconds = _compile(adapter, members, state)  # after on_start: a hook may stop the run before any compiling
    for member in members:
        member.clock.compile = seconds
    active = list(members)
    for epoch in range(len(members[0].history) + 1, members[0].config.run_epochs + 1):
        lead = active[0].callbacks  # one progress bar: the first member's
        state, records = _epoch(adapter, state, active, epoch, lead.on_progress if lead.wants_progress else None)
        kept = [i for i, (member, mine, record) in enumerate(zip(active, adapter.split(state), records))
                if member.record(mine, record, adapter.track)]
        if not kept:
            return
        if len(kept) < len(active):  # a diverged member ends alone: the others go on without it
            state, active = adapter.keep(state, kept), [active[i] for i in kept]
    for member in active:
        member.completed()


def _epoch(adapter: Lone, state, members: list[Member], epoch: int, progress) -> tuple[object, list[dict]]:
    """Train one epoch of every member and evaluate it; each member's record (before the checks)."""
    t0 = time.perf_counter()
    state, trains = adapter.train_epoch(members, state, epoch, progress)
    seconds = time.perf_counter() - t0  # an epoch ends by fetching its metrics; a stack's is each member's
    tests = adapter.evaluate(state, adapter.arrays[2], adapter.arrays[3])
    held = adapter.evaluate(state, *adapter.val) if adapter.val else [None] * len(members)  # --val-split
    records = []
    for train_metrics, test, val in zip(trains, tests, held):
        record = {"epoch": epoch, **train_metrics, "test_loss": test["loss"], "test_accuracy": test["accuracy"]}
        if val is not None:
            record.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
        records.append({**record, "seconds": seconds})
    return state, records
