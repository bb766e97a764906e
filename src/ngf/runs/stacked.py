"""Runs that differ only in seed (and lr), trained together as one vmapped program, each keeping its own files.

``run_stack`` opens every member as ``ngf.run`` opens a run (``open_member``: the folder
checked and locked, a resume's options checked, the rule, data and model resolved, the
``config.toml`` written when the run would write it), then trains them together with
``ngf.core.stacked``: each epoch is one program over the members' states. Every member
is then checked for divergence, checkpointed and recorded in its own folder as
``ngf.runs.loop`` records a lone run (checkpoint first, then ``metrics.jsonl``, then
the callbacks), so a member's folder is a lone run's: ``ngf run --resume DIR``
continues it alone.

A member that diverges stops alone: its diverged summary is written and its ``on_end``
called, and the stack goes on without it (its state is dropped; the program is compiled
once more for one member fewer). An interruption writes every unfinished member's
interrupted summary. Each summary records its stack: ``"stack": {"size": K, "index": i}``.
Members must start from the same epoch (all fresh, or all at one checkpoint's epoch);
``ngf.experiments.stacked`` groups runs so. Members whose lrs differ share an optimiser
built for lr 1, each one's changes multiplied by its lr (``ngf.core.stacked.member_call``):
the same optimiser state, so the same checkpoints, as their lone runs.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import jax

from ngf.core.engine import Engine, choose_steps_per_call
from ngf.core.errors import NgfError
from ngf.core.init import initialise, seed_key
from ngf.core.stacked import StackedEngine, stack_trees, take, unstack_tree
from ngf.runs import atomic, checkpoint, configfile, files, folder, identity, resuming
from ngf.runs.arguments import check_arguments, plain_numbers
from ngf.runs.callbacks import Callbacks, WithHooks
from ngf.runs.compilecache import enable_compile_cache
from ngf.runs.config import RunConfig, make_optimizers
from ngf.runs.divergence import FIRST_TEST_EXAMPLES, DivergenceCheck
from ngf.runs.resolve import Resolved, resolve
from ngf.runs.summary import Clock, summarise
from ngf.runs.writable import check_writable_file


@dataclasses.dataclass
class Member:
    """One run of a stack: its options, locked folder, callbacks and what it has recorded."""

    config: RunConfig
    place: folder.RunFolder
    callbacks: WithHooks
    names: dict
    params: tuple  # the model's parameters as its lone run resolves them (before --init)
    stack: dict  # {"size": K, "index": i}: recorded in its summary and on_start's info
    atomic_nodes: list  # the nodes trained by backprop inside (Resolved.atomic_nodes): its summary, on_start's info
    clock: Clock = dataclasses.field(default_factory=Clock)
    history: list = dataclasses.field(default_factory=list)
    guard: DivergenceCheck | None = None
    data_key: jax.Array | None = None
    summary: dict | None = None  # set once the member has ended (completed, diverged, interrupted)
    problem: str | None = None  # a diverged member's message (the one ``ngf.Diverged`` carries)


def open_member(config: RunConfig, registry, callbacks, stack: dict) -> tuple[Member, Resolved]:
    """Prepare one member as ``ngf.run`` prepares a run (``ngf.runs.api.run``), up to its first epoch."""
    check_arguments(config, registry, callbacks)
    config = plain_numbers(config)  # api._configured: NumPy numbers made plain, then validated
    config.validate()
    folder.check(config)
    if config.log_csv is not None:  # like --out, before any work
        check_writable_file(config.log_csv, "--log-csv")
    place = folder.prepare(config)  # the folder's lock: one writer
    try:
        if config.resume:  # the options must be the stored run's
            resuming.check_same_run(config, registry)
        hooks = WithHooks(callbacks or Callbacks(), registry.manager, config)
        run = resolve(config, registry)
        place.identity = identity.of_run(resuming.comparable(config, registry), run.data, run.names["dataset"])
        record = configfile.resolved(config, registry, run.names)
        place.write_config = functools.partial(configfile.write, place.out, config, registry, run.names, record)
        if not (config.resume or place.replaces):  # a resumed run rewrites it once its checkpoint is read
            place.claim()
    except BaseException:
        place.close(failed=True)  # nothing of this member's is claimed yet: remove what it made
        raise
    return Member(config, place, hooks, run.names, run.params, stack, run.atomic_nodes), run


def run_stack(configs: list[RunConfig], registry, callbacks: list) -> list[Member]:
    """Train the runs ``configs`` (differing only in seed) as one stack; each member ends with its summary.

    Returns the members: ``member.summary`` is what ``ngf.run`` would return (or carry,
    for a diverged member, whose ``problem`` is ``Diverged``'s message). Bad input raises
    ``NgfError`` before the stack trains; an interruption re-raises ``KeyboardInterrupt``
    after every member's interrupted summary is written (``exc.summaries``).
    """
    enable_compile_cache()  # as ngf.run: before anything is compiled
    members, run, error = [], None, True
    try:
        for index, (config, hooks) in enumerate(zip(configs, callbacks)):
            member, resolved = open_member(config, registry, hooks, {"size": len(configs), "index": index})
            members.append(member)
            run = run or resolved  # the rule, data and model of the first member serve the stack
        train_stack(members, run)
        error = False
        return members
    except KeyboardInterrupt as exc:
        _interrupted(members, exc)
        error = False
        raise
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        raise NgfError(f"cannot write to a run folder:{where} {exc.strerror or exc}") from None
    finally:  # as ngf.run: a member stopped before its first file leaves no folder behind
        for member in members:
            member.place.close(error or not member.place.claimed)


def _start(members: list[Member], run: Resolved):
    """The stacked engine, the data on the device and the members' stacked state (fresh or restored)."""
    config = members[0].config
    n_steps = len(run.data.x_train) // config.batch_size
    per_call = config.steps_per_call or choose_steps_per_call(run.model, n_steps)  # the lone run's choice
    per_member_lr = len({member.config.lr for member in members}) > 1  # then the optimiser is built for lr 1
    optimizer, rule_optimizer = make_optimizers(dataclasses.replace(config, lr=1.0) if per_member_lr else config,
                                                n_steps, run.rule)
    engine = Engine(run.net, run.rule, optimizer, config.batch_size, len(run.data.x_train), per_call,
                    rule_optimizer=rule_optimizer)
    arrays = jax.device_put(tuple(run.data[:4]))  # the data on the device, shared by every member
    states = []
    for member in members:  # each exactly as loop._start makes a lone run's
        params = initialise(member.params, member.config.init, member.config.seed)
        rule_key, member.data_key = jax.random.split(seed_key(member.config.seed))
        fresh = engine.init(rule_key, params)
        out = member.place.out
        state, member.history, member.clock.earlier = checkpoint.start(
            out, fresh, member.config.resume, identity=member.place.identity)
        if member.config.resume:  # the summary of where it stopped no longer holds; the config is rewritten
            files.remove_summary(out)
            member.place.claim()
        first = engine.evaluate(fresh, arrays[2][:FIRST_TEST_EXAMPLES], arrays[3][:FIRST_TEST_EXAMPLES])
        member.guard = DivergenceCheck(first["loss"], run.data.n_classes, member.config.divergence_ratio)
        states.append(state)
    if len({len(member.history) for member in members}) > 1:
        raise NgfError("the runs of a stack must start from the same epoch; run them alone (--stack 1)")
    stacked, state = StackedEngine(engine, per_member_lr), stack_trees(states)  # stacking copies: no double donation
    keys = [jax.random.fold_in(member.data_key, 0) for member in members]
    seconds = stacked.compile(state, arrays[0], arrays[1], keys, (arrays[2], arrays[3]),  # before the first epoch
                              lrs=_lrs(stacked, members))
    for member in members:  # the summary's compile_seconds (loop._start's clock.compile)
        member.clock.compile = seconds
    return stacked, arrays, state


def train_stack(members: list[Member], run: Resolved) -> None:
    """Train the opened ``members`` together to their last epoch; each ends with its ``summary``."""
    engine, arrays, state = _start(members, run)
    device = f"1 × {jax.devices()[0].device_kind}"
    for member in members:
        member.callbacks.on_start({**member.names, "seed": member.config.seed, "steps_per_epoch": engine.n_steps,
                                   "steps_per_call": engine.steps_per_call, "device": device,
                                   "stack": dict(member.stack), "atomic_nodes": list(member.atomic_nodes),
                                   "history": list(member.history)})
    active = list(members)
    for epoch in range(len(members[0].history) + 1, members[0].config.run_epochs + 1):
        lead = active[0].callbacks  # one progress bar for the stack: its first member's
        state, records = _epoch(engine, arrays, state, active, epoch,
                                lead.on_progress if lead.wants_progress else None)
        kept = [i for i, (member, mine, record) in enumerate(zip(active, unstack_tree(state), records))
                if _record(member, mine, record)]
        if len(kept) < len(active):  # a diverged member stops alone: the others go on without it
            if not kept:
                return
            state, active = take(state, kept), [active[i] for i in kept]
    for member in active:
        member.place.claim()
        member.summary = summarise(member.config, member.names, member.history, member.clock, "completed",
                                   atomic_nodes=member.atomic_nodes, stack=member.stack)
        files.write_summary(member.place.writes, member.summary)
        member.callbacks.on_end(member.summary)


def _epoch(engine: StackedEngine, arrays: tuple, state, members: list[Member], epoch: int, progress):
    """Train one epoch of every member and evaluate it; each member's record (``loop._epoch``'s keys)."""
    x_train, y_train, x_test, y_test = arrays
    t0 = time.perf_counter()
    keys = [jax.random.fold_in(member.data_key, epoch) for member in members]  # each lone run's epoch key
    state, train = engine.train_epoch(state, x_train, y_train, keys, progress, _lrs(engine, members))
    seconds = time.perf_counter() - t0  # the stack's epoch: what each member waited for
    test = engine.evaluate(state, x_test, y_test)
    return state, [{"epoch": epoch, **mine, "test_loss": held["loss"], "test_accuracy": held["accuracy"],
                    "seconds": seconds} for mine, held in zip(train, test)]


def _lrs(engine: StackedEngine, members: list[Member]) -> list[float] | None:
    """Each member's lr where they differ (the engine's optimiser is then built for lr 1), else None."""
    return [member.config.lr for member in members] if engine.per_member_lr else None


def _record(member: Member, state, record: dict) -> bool:
    """Check, checkpoint and record one member's epoch as ``loop.train`` does; False if it diverged."""
    problem = member.guard.problem(record, (state.params, state.rule_params))  # one device check per epoch
    if problem is not None:
        _diverged(member, record, problem)
        return False
    member.place.claim()  # an --overwrite run's old files go now, as its first checkpoint comes
    out = member.place.writes
    checkpoint.save(out, state, member.history + [record], member.clock.total(),  # the checkpoint, then the record
                    member.place.identity)
    member.history.append(record)
    files.write_metrics(out, member.history)
    member.callbacks.on_epoch(record)
    return True


def _diverged(member: Member, record: dict, problem: str) -> None:
    """Write the summary of a member that diverged in ``record``'s epoch (``loop._diverged``, without raising)."""
    config, out, epoch = member.config, member.place.writes, record["epoch"]
    member.place.claim()
    summary = summarise(config, member.names, member.history, member.clock, "diverged", last=record,
                        atomic_nodes=member.atomic_nodes, diverged_epoch=epoch, diverged_because=problem,
                        diverged_record=record, stack=member.stack)
    files.write_summary(out, summary)
    member.summary = atomic.finite_or_none(summary)  # what ngf.Diverged carries
    kept = (f"; kept the checkpoint of epoch {len(member.history)} in {out}" if out is not None and member.history
            else "")
    member.problem = (f"training diverged in epoch {epoch} of {config.run_epochs}: {problem} "
                      f"(lower --lr?){kept}")
    member.callbacks.on_end(summary)


def _interrupted(members: list[Member], exc: KeyboardInterrupt) -> None:
    """Write every unfinished member's interrupted summary (``loop._interrupted``'s rules) and attach them."""
    for member in members:
        if member.summary is not None:  # completed or diverged before the interruption
            continue
        history = member.history
        if not history and member.config.resume:  # stopped before the checkpoint was read
            history = checkpoint.stored_history(member.place.out)
        member.summary = summarise(member.config, member.names, history, member.clock, "interrupted",
                                   atomic_nodes=member.atomic_nodes, stack=member.stack)
        if history or member.config.resume or member.place.claimed:  # an --overwrite run not yet begun: left whole
            member.place.claim()
            files.write_metrics(member.place.writes, history)
            files.write_summary(member.place.writes, member.summary)
    exc.summaries = [member.summary for member in members]
    exc.summary = getattr(exc, "summary", None) or (exc.summaries[0] if exc.summaries else None)
