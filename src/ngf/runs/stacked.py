"""Runs that differ only in seed (and lr), trained together as one vmapped program, each keeping its own files.

``run_stack`` trains its runs as the members of one ``ngf.runs.loop.run_members`` through
``Stack``: each epoch is one ``StackedEngine`` program over the members' states. A member's
folder is a lone run's (``ngf run --resume DIR`` continues it alone); its summary records
its stack (``"stack": {"size": K, "index": i}``). Members start from the same epoch
(``ngf.experiments.stacked`` groups them so); where their lrs differ, they share an optimiser
built for lr 1, each one's changes × its lr (``ngf.core.stacked.member_call``).
"""

from __future__ import annotations

import dataclasses

import jax

from ngf.core.errors import NgfError
from ngf.core.stacked import StackedEngine, stack_trees, take, unstack_tree
from ngf.runs.compilecache import enable_compile_cache
from ngf.runs.config import RunConfig
from ngf.runs.loop import Lone, run_members
from ngf.runs.members import Member, configured, write_error


class Stack(Lone):
    """``StackedEngine`` as the loop drives it: the members' states along a leading axis, on one device."""

    stacked = True

    def __init__(self, members: list[Member], run):
        self.per_member_lr = len({member.config.lr for member in members}) > 1  # then the optimiser is for lr 1
        super().__init__(members, run)
        self.stack = StackedEngine(self.engine, self.per_member_lr)

    def engine_config(self, members: list[Member]) -> RunConfig:
        """The members' options, at lr 1 where their lrs differ."""
        return dataclasses.replace(members[0].config, lr=1.0) if self.per_member_lr else members[0].config

    def join(self, members: list[Member], states: list):
        """The members' states stacked (stacking copies: no double donation)."""
        if len({len(member.history) for member in members}) > 1:
            raise NgfError("the runs of a stack must start from the same epoch; run them alone (--stack 1)")
        return stack_trees(states)

    def compile(self, members: list[Member], state) -> float:
        """Compile the stacked epoch's programs (``StackedEngine.compile``); the seconds it took."""
        keys = [jax.random.fold_in(member.data_key, 0) for member in members]
        return self.stack.compile(state, self.arrays[0], self.arrays[1], keys, (self.arrays[2], self.arrays[3]),
                                  lrs=self._lrs(members))

    def train_epoch(self, members: list[Member], state, epoch: int, progress):
        """Train epoch ``epoch`` of every member, each on its lone run's permutation; the state and their metrics."""
        keys = [jax.random.fold_in(member.data_key, epoch) for member in members]
        return self.stack.train_epoch(state, self.arrays[0], self.arrays[1], keys, progress, self._lrs(members))

    def evaluate(self, state, data_x, data_y) -> list[dict]:
        """Each member's mean loss and accuracy over a dataset."""
        return self.stack.evaluate(state, data_x, data_y)

    def split(self, state) -> list:
        """Each member's state, shaped as a lone run's."""
        return unstack_tree(state)

    def keep(self, state, kept: list[int]):
        """The stacked state of the members ``kept`` (compiled once more for fewer members)."""
        return take(state, kept)

    def _lrs(self, members: list[Member]) -> list[float] | None:
        """Each member's lr where they differ (the engine's optimiser is then built for lr 1), else None."""
        return [member.config.lr for member in members] if self.per_member_lr else None


def run_stack(configs: list[RunConfig], registry, callbacks: list) -> list[Member]:
    """Train the runs ``configs`` (differing only in seed and lr) as one stack; ``loop.run_members``'s members."""
    enable_compile_cache()  # before anything is compiled
    configs = [configured(config, registry, hooks) for config, hooks in zip(configs, callbacks)]
    try:
        return run_members(configs, registry, callbacks, Stack)
    except OSError as exc:
        raise write_error(exc, "a run folder") from None
