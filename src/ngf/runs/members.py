"""The members the epoch loop trains: each one run, with its own options, folder, hooks and files.

A lone run (``ngf.run``) is one member; a stack (``ngf.runs.stacked``) is several. Every
member is opened the same way (``open_member``: the folder checked and locked, a resume's
options checked, the rule, data and model resolved, the ``config.toml`` written when the
run would write it), and records its epochs and ends the same way: checkpoint first,
then ``metrics.jsonl``, then the callbacks; a ``summary.json`` when it completes,
diverges or is interrupted.
"""

from __future__ import annotations

import dataclasses
import functools

import jax

from ngf.core.errors import NgfError
from ngf.core.parallel import DataParallel, device_count
from ngf.host.registry import load_registry
from ngf.runs import atomic, checkpoint, configfile, files, folder, identity, resuming
from ngf.runs.arguments import check_arguments, plain_numbers
from ngf.runs.callbacks import Callbacks, WithHooks
from ngf.runs.config import RunConfig
from ngf.runs.divergence import DivergenceCheck
from ngf.runs.resolve import Resolved, resolve
from ngf.runs.spec import RunSpec
from ngf.runs.summary import Clock, summarise
from ngf.runs.writable import check_writable_file


@dataclasses.dataclass
class Member:
    """One run the loop trains: its options, locked folder, callbacks and what it has recorded."""

    config: RunConfig
    place: folder.RunFolder
    callbacks: WithHooks
    names: dict
    params: tuple  # the model's parameters as resolved (before --init)
    atomic_nodes: list  # the nodes trained by backprop inside (Resolved.atomic_nodes): its summary, on_start's info
    stack: dict | None = None  # {"size": K, "index": i} for a member of a stack: its summary and on_start's info
    clock: Clock = dataclasses.field(default_factory=Clock)
    history: list = dataclasses.field(default_factory=list)
    guard: DivergenceCheck | None = None
    data_key: jax.Array | None = None
    summary: dict | None = None  # set once the member has ended (completed, diverged, interrupted)
    problem: str | None = None  # a diverged member's message (the one ``ngf.Diverged`` carries)

    def summarise(self, status: str, history: list | None = None, **extra) -> dict:
        """The member's summary with ``status`` after ``history`` (by default its own)."""
        stack = {} if self.stack is None else {"stack": self.stack}
        return summarise(self.config, self.names, self.history if history is None else history, self.clock, status,
                         atomic_nodes=self.atomic_nodes, **extra, **stack)

    def start_info(self, engine, device: str) -> dict:
        """What ``on_start`` hears: the names, seed, the engine's steps, the device and the epochs done."""
        stack = {} if self.stack is None else {"stack": dict(self.stack)}
        return {**self.names, "seed": self.config.seed, "steps_per_epoch": engine.n_steps,
                "steps_per_call": engine.steps_per_call, "device": device, **stack,
                "atomic_nodes": list(self.atomic_nodes), "history": list(self.history)}

    def record(self, state, record: dict, track) -> bool:
        """Check, checkpoint and record one epoch ending in ``state``; False if it diverged (and ended)."""
        problem = self.guard.problem(record, (state.params, state.rule_params))  # one device check per epoch
        if problem is not None:
            self.diverged(record, problem)
            return False
        if track is not None:  # outside the timed epoch: one jitted call on the first training batch
            record["alignment_degrees"] = track(state)
        self.place.claim()  # an --overwrite run's old files go now, as its first checkpoint comes
        out = self.place.writes  # in a multi-process run process 0 writes
        checkpoint.save(out, state, self.history + [record], self.clock.total(),  # the checkpoint, then the record
                        self.place.identity)
        self.history.append(record)
        files.write_metrics(out, self.history)
        self.callbacks.on_epoch(record)
        return True

    def completed(self) -> None:
        """Write the summary of the finished member and call ``on_end``."""
        self.place.claim()
        self.summary = self.summarise("completed")
        files.write_summary(self.place.writes, self.summary)
        self.callbacks.on_end(self.summary)

    def diverged(self, record: dict, problem: str) -> None:
        """Write the summary of a member that diverged in ``record``'s epoch, set its ``problem``, call ``on_end``."""
        config, out, epoch = self.config, self.place.writes, record["epoch"]
        self.place.claim()
        summary = self.summarise("diverged", last=record, diverged_epoch=epoch, diverged_because=problem,
                                 diverged_record=record)
        files.write_summary(out, summary)
        self.summary = atomic.finite_or_none(summary)  # what ngf.Diverged carries
        kept = (f"; kept the checkpoint of epoch {len(self.history)} in {out}" if out is not None and self.history
                else "")
        self.problem = f"training diverged in epoch {epoch} of {config.run_epochs}: {problem} (lower --lr?){kept}"
        self.callbacks.on_end(summary)

    def interrupted(self) -> None:
        """Write the interrupted summary of a member that has not ended (and its ``metrics.jsonl``).

        An ``--overwrite`` run stopped before its first epoch writes nothing: the old run stays whole.
        """
        if self.summary is not None:  # completed or diverged before the interruption
            return
        history = self.history
        if not history and self.config.resume:  # stopped before the checkpoint was read
            history = checkpoint.stored_history(self.place.out)
        self.summary = self.summarise("interrupted", history)
        if history or self.config.resume or self.place.claimed:
            self.place.claim()
            files.write_metrics(self.place.writes, history)
            files.write_summary(self.place.writes, self.summary)


def interrupted(members: list[Member], exc: KeyboardInterrupt) -> None:
    """Write every unfinished member's interrupted summary and attach them to ``exc``.

    ``exc.summaries`` holds each member's; ``exc.summary`` the first's, unless ``exc``
    carries one already (an interruption in ``on_end``: the summary of that end).
    """
    for member in members:
        member.interrupted()
    exc.summaries = [member.summary for member in members]
    exc.summary = getattr(exc, "summary", None) or (exc.summaries[0] if exc.summaries else None)


def configured(config: RunConfig | None, registry, callbacks, overrides: dict | None = None) -> RunConfig:
    """``config`` (or the defaults) with ``overrides`` applied and NumPy numbers made plain, validated;
    ``registry`` and ``callbacks`` checked."""
    check_arguments(config, registry, callbacks)
    fields = [f.name for f in dataclasses.fields(RunConfig)]
    for name in overrides or {}:
        if name not in fields:
            raise NgfError(f"unknown run option {name!r}; valid options: {', '.join(fields)}")
    config = plain_numbers(dataclasses.replace(config or RunConfig(), **(overrides or {})))
    config.validate()
    return config


def open_member(config: RunConfig, registry, callbacks, labels: dict | None = None,
                stack: dict | None = None) -> tuple[Member, Resolved]:
    """Check, lock and resolve the run ``config`` up to its first epoch; the member and what it resolved to.

    Its options are bound to their factories once (``RunSpec.of``): the resume check, the
    objects, the checkpoints' fingerprint and ``config.toml`` all read that spec. ``registry``
    None loads the plugins once the folder is locked. ``labels`` name objects of the Python
    API (``ngf.run``'s ``rule_name=``...). Anything raised before the member exists removes
    what it made.
    """
    folder.check(config)
    if config.log_csv is not None:  # like --out, before any work
        check_writable_file(config.log_csv, "--log-csv")
    place = folder.prepare(config)  # the folder's lock: one writer, taken before the plugins and data load
    try:
        registry = registry or load_registry()
        spec = RunSpec.of(config, registry)  # the one binding of the options to their factories
        stored = resuming.check_same_run(spec) if config.resume else None  # before the data are loaded
        hooks = WithHooks(callbacks or Callbacks(), registry.manager, config)
        run = resolve(spec, registry, labels)
        _check_devices(config)  # every input is checked before any of the run's files is written
        place.identity, place.restores = identity.of_run(spec, run.data, run.names["dataset"], stored)
        place.write_config = functools.partial(configfile.write, place.out, config, spec.written(run.names))
        if not (config.resume or place.replaces):  # a resumed run rewrites it once its checkpoint is read
            place.claim()
    except BaseException:
        place.close(failed=True)  # stopped before its first epoch: what it made is removed
        raise
    return Member(config, place, hooks, run.names, run.params, run.atomic_nodes, stack), run


def _check_devices(config: RunConfig) -> None:
    """Refuse a device count, or a batch that does not split across the devices, before the folder is touched."""
    n_devices = device_count(config.devices)
    if n_devices > 1:
        DataParallel.over(n_devices).check_batch(config.batch_size)


def write_error(exc: OSError, where: str) -> NgfError:
    """The one-line error for a file of the run folder ``where`` that could not be written."""
    name = f" {exc.filename}" if exc.filename else ""
    return NgfError(f"cannot write to {where}:{name} {exc.strerror or exc}")

