"""Which runs of an experiment train together (``--stack N``), and training them for ``execute``.

Runs stack when they differ only in seed and lr: the same rule, model and dataset, given
by name, and every other option equal (``stack_key``; a sweep's ``--grid lr=...`` points
stack with their seeds, ``ngf.runs.stacked``), starting from the same point (all
fresh, or all resumed from a checkpoint of the same epoch). Runs that cannot stack run
alone, through ``ngf.run``: a rule, model or dataset given as an object,
``--devices`` > 1 or several processes, ``--track-alignment`` (its tracker is a lone
run's) and ``--val-split`` (its held-out examples, hence its training data, depend on
the seed). Every built-in rule stacks (none branches with ``lax.cond``; ``local-search``'s
acceptance is a ``jnp.where``, and stacked it gave its lone runs' metrics bit for bit on
tiny data). Groups take the runs of equal keys in the plan's order, N at a time, and
train when the first of them comes; a group of one runs alone.

The default N (``--stack`` not given, ``default_size``) never slows a run down. On this
project's 2-core CPU a stack of K = 2 or 4 seeds was no faster than the same K runs one
after another (``scripts/stack_timing.py``, MNIST, batch 64; docs/benchmarks.md, Stacked
seeds): the default mlp took 0.97–1.21× their wall time and 0.98–1.13× their CPU time
(XLA transposes each batched weight gradient), the cnn and LeNet-5 2.0–3.3× the wall
time (a vmapped convolution is a grouped one, slow on XLA's CPU backend). So on a CPU
the default is 1: each run trains alone. On a GPU or TPU a batch-64 run fills a small
part of the chip (issue 15: LeNet-5 uses 1–2% of an H200), so every seed of a variant
stacks, up to ``ACCELERATOR_CAP`` members (not yet timed on a GPU).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax

from ngf.core.errors import NgfError
from ngf.core.parallel import device_count
from ngf.runs import checkpoint
from ngf.runs.config import RunConfig
from ngf.runs.fields import FIELDS_WITH
from ngf.runs.stacked import run_stack

ACCELERATOR_CAP = 16  # members of one stack on a GPU or TPU (the 16-seed LeNet-5 target)


def default_size() -> int:
    """The stack size when ``--stack`` is not given: 1 on a CPU, ``ACCELERATOR_CAP`` on a GPU or TPU."""
    return 1 if jax.default_backend() == "cpu" else ACCELERATOR_CAP


def check_size(size) -> int:
    """``--stack N``: a positive integer (None: ``default_size()``)."""
    if size is None:
        return default_size()
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise NgfError(f"--stack must be a positive integer (1: every run alone), got {size!r}")
    return size


def stack_key(config):
    """What must be equal for runs to stack: what their ``config.toml`` holds but the seed and (unless the
    optimiser's state depends on it) the lr; None: it runs alone."""
    if not all(isinstance(getattr(config, kind), str) for kind in FIELDS_WITH["object"]):
        return None  # objects of the Python API
    if (config.track_alignment or config.val_split
            or device_count(config.devices) > 1 or jax.process_count() > 1):
        return None
    lr = config.lr if lr_in_state(config) else None  # None: the lr may differ, per member (ngf.runs.stacked)
    placement = {name: RunConfig.__dataclass_fields__[name].default for name in FIELDS_WITH["not_written"]}
    return dataclasses.replace(config, seed=0, lr=lr, **placement)  # what config.toml holds, less seed and lr


def lr_in_state(config) -> bool:
    """Whether the optimiser's state depends on the lr: rmsprop's momentum traces changes already
    scaled by it (optax.rmsprop), so such runs stack only with runs of their own lr."""
    return config.optimizer == "rmsprop" and config.momentum is not None


def start_epoch(config) -> int:
    """The epoch a prepared run starts after: its checkpoint's (a resume), else 0."""
    return len(checkpoint.stored_history(config.out)) if config.resume else 0


def groups(prepared: list, size: int) -> list[list[int]]:
    """Indices of the runs to train together: runs still to train with equal keys, in plan order, ``size`` at a time.

    A group that would hold one run is left out: that run runs alone.
    """
    keyed: list[tuple[object, list[int]]] = []  # (key, indices); keys hold dicts, so a list, not a dict
    for i, (config, summary) in enumerate(prepared):
        key = stack_key(config) if summary is None and size > 1 else None
        if key is None:
            continue
        key = (key, start_epoch(config))  # all fresh, or all resumed from the same epoch
        found = next((indices for other, indices in keyed if other == key), None)
        if found is None:
            keyed.append((key, [i]))
        else:
            found.append(i)
    chunks = [indices[start:start + size] for _, indices in keyed for start in range(0, len(indices), size)]
    return sorted((chunk for chunk in chunks if len(chunk) > 1), key=lambda chunk: chunk[0])


class Stacks:
    """The stacks of an experiment's plan, each trained when its first run's turn comes (``execute``)."""

    def __init__(self, runs: list, prepared: list, registry, make_callbacks: Callable | None,
                 report: Callable[[str], None], size=None):
        self.runs, self.prepared, self.registry = runs, prepared, registry
        self.make_callbacks, self.report = make_callbacks, report
        self.group = {i: group for group in groups(prepared, check_size(size)) for i in group}
        self.done: dict[int, dict] = {}

    def status(self, i: int) -> str | None:
        """What ``execute`` reports for run ``i`` of a stack (None: not stacked)."""
        group = self.group.get(i)
        if group is None:
            return None
        if i != group[0]:
            return f"trained in the stack of [{group[0] + 1}/{len(self.runs)}]"
        doing = "resuming" if self.prepared[i][0].resume else "running"
        if len({self.runs[j].label for j in group}) == 1:  # seeds of one variant
            return f"{doing} with seeds {', '.join(str(self.runs[j].seed) for j in group)} as one stack"
        members = ", ".join(f"{self.runs[j].label} seed {self.runs[j].seed}" for j in group)
        return f"{doing} as one stack with {members}"

    def run(self, i: int) -> dict | None:
        """Run ``i``'s summary, training its stack if it is the first of one; None if it runs alone."""
        group = self.group.get(i)
        if group is None:
            return None
        if i == group[0]:
            callbacks = [self.make_callbacks(self.runs[j]) if self.make_callbacks else None for j in group]
            members = run_stack([self.prepared[j][0] for j in group], self.registry, callbacks)
            for j, member in zip(group, members):
                if member.problem is not None:  # as execute reports a lone run that diverged
                    item = self.runs[j]
                    self.report(f"[{j + 1}/{len(self.runs)}] {item.label} · {item.dataset} · seed {item.seed}: "
                                f"{member.problem}")
                self.done[j] = member.summary
        return self.done[i]
