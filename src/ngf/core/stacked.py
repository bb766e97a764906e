"""Several runs that differ only in seed (or lr), trained as one vmapped program (README.md, ``--stack``).

A stack of K members holds each member's ``TrainState`` along a leading axis of length
K; the engine's own call (``Engine._make_call``: one step, or a ``lax.scan`` of steps)
is ``jax.vmap``-ed over that axis for the state, the running sums and the member's
permutation, while the data arrays and the start step are shared (``in_axes`` None).
Each member's permutation is the one its lone run draws (``jax.random.permutation``
of its own epoch key, drawn member by member, so it is the same integers), and its
initial state is built by ``Engine.init`` as a lone run's, so a member differs from
its lone run only by the rounding of the batched arithmetic (within 1e-4 per epoch:
tests/test_stacked.py). Steps per call are the lone engine's: one per call for
convolutional models on a CPU, a scan otherwise (``choose_steps_per_call``).
Evaluation is vmapped alike, in the lone engine's fixed-size padded batches. Members may
also differ in lr (``per_member_lr``: ``member_call``).
"""

from __future__ import annotations

import copy
import time
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from ngf.core.engine import EVAL_BATCH, Engine, padded_batches, run_calls
from ngf.core.step import epoch_metrics, evaluate_batch, n_sums

TRAIN_AXES = (0, 0, None, None, 0, None)  # state, sums, data_x, data_y, perm, start: data and start shared


def stack_trees(trees: list):
    """One pytree whose every leaf stacks the members' leaves along a new leading axis (PRNG keys too)."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


@jax.jit
def _unstack(tree) -> list:
    """Every member's slice of a stacked pytree, in one compiled call (one per stack size)."""
    size = jax.tree.leaves(tree)[0].shape[0]
    return [jax.tree.map(lambda leaf, i=i: leaf[i], tree) for i in range(size)]


def unstack_tree(tree) -> list:
    """The members of a stacked pytree, each shaped as a lone run's."""
    return _unstack(tree)


def take(tree, keep: list[int]):
    """The stacked pytree of the members ``keep`` (indices along the leading axis), in that order."""
    rows = jnp.asarray(keep, jnp.int32)
    return jax.tree.map(lambda leaf: leaf[rows], tree)


def scale_changes(optimizer: optax.GradientTransformation, factor) -> optax.GradientTransformation:
    """``optimizer`` with every change it makes multiplied by ``factor`` (its state unchanged)."""

    def update(updates, state, params=None):
        changes, state = optimizer.update(updates, state, params)
        return jax.tree.map(lambda change: change * factor, changes), state

    return optax.GradientTransformation(optimizer.init, update)


def member_call(engine: Engine, length: int, per_member_lr: bool):
    """``Engine._make_call(length)``; with ``per_member_lr``, a call taking one more argument, the member's lr.

    Every optimiser ngf builds (``ngf.runs.protocol.build_optimizer``: the lr, its schedule,
    decoupled weight decay) is linear in the lr, and all but rmsprop with momentum (whose
    trace holds lr-scaled changes: ``ngf.experiments.stacked.lr_in_state`` keeps those
    runs to their own lr) keep no lr in their state, so an engine whose optimiser was
    built for lr 1 and whose changes are multiplied by lr makes the lone run's changes (up
    to rounding) and the lone run's optimiser state, checkpoint included.
    """
    if not per_member_lr:
        return engine._make_call(length)

    def call(state, sums, data_x, data_y, perm, start, lr):
        twin = copy.copy(engine)  # the lone engine, its optimiser's changes × this member's lr
        twin.optimizer = scale_changes(engine.optimizer, lr)
        twin.rule_optimizer = scale_changes(engine.rule_optimizer, lr)
        return twin._make_call(length)(state, sums, data_x, data_y, perm, start)

    return call


class StackedEngine:
    """Runs epochs of a lone ``Engine``'s configuration for a stack of members at once.

    The number of members is the leading axis of the state handed in: a stack that
    loses a member (it diverged) continues with the smaller state, compiled once more.
    """

    def __init__(self, engine: Engine, per_member_lr: bool = False):
        if engine.parallel is not None:  # a stack shares one device; --devices > 1 runs alone
            raise ValueError("a stacked engine runs on one device")
        self.engine, self.per_member_lr = engine, per_member_lr
        self.n_steps, self.steps_per_call, self.n_calls = engine.n_steps, engine.steps_per_call, engine.n_calls
        axes = TRAIN_AXES + ((0,) if per_member_lr else ())  # the members' lrs: one more argument, per member
        self.train_call = jax.jit(jax.vmap(member_call(engine, engine.steps_per_call, per_member_lr), in_axes=axes),
                                  donate_argnums=0)  # the lone engine's call over the member axis, state donated
        tail = engine.n_steps % engine.steps_per_call  # the epoch's last, shorter call, as the lone engine's
        self.tail_call = (jax.jit(jax.vmap(member_call(engine, tail, per_member_lr), in_axes=axes), donate_argnums=0)
                          if tail else None)
        self.eval_call = jax.jit(jax.vmap(lambda state, x, y, w: evaluate_batch(  # state per member, data shared
            engine.net, engine.rule, state, x, y, w), in_axes=(0, None, None, None)))

    def init(self, keys: list, params: list):
        """The stacked fresh state of members with rule keys ``keys`` and parameters ``params``."""
        return stack_trees([self.engine.init(key, theta) for key, theta in zip(keys, params)])

    def _lrs(self, lrs) -> tuple:
        """The extra argument of a per-member-lr call (the members' lrs as float32), else nothing."""
        if not self.per_member_lr:
            return ()
        if lrs is None:
            raise ValueError("this stacked engine takes each member's lr")
        return (jnp.asarray(lrs, jnp.float32),)

    def compile(self, state, data_x, data_y, keys: list, *eval_sets, lrs=None) -> float:
        """Compile every program a stacked epoch runs before the first one (``Engine.compile``'s way); seconds.

        The training call (and the shorter last one) is lowered with the epoch's own
        arguments (the permutations of ``keys``), and the evaluation of each ``(x, y)``
        of ``eval_sets``, so the first epoch's time is its training alone.
        """
        t0 = time.perf_counter()
        perms = jnp.stack([jax.random.permutation(key, data_x.shape[0]) for key in keys])
        sums = jnp.zeros((len(keys), n_sums(self.engine.rule)), jnp.float32)
        extra = self._lrs(lrs)
        self.train_call.lower(state, sums, data_x, data_y, perms, 0, *extra).compile()
        if self.tail_call is not None:
            start = (self.n_calls - 1) * self.steps_per_call
            self.tail_call.lower(state, sums, data_x, data_y, perms, start, *extra).compile()
        for x, y in eval_sets:
            size = min(EVAL_BATCH, x.shape[0])
            self.eval_call.lower(state, x[:size], y[:size], jnp.ones(size, jnp.float32)).compile()
        return time.perf_counter() - t0

    def train_epoch(self, state, data_x, data_y, keys: list,
                    on_progress: Callable[[int, int], None] | None = None, lrs=None):
        """One epoch of every member, member i on the permutation its lone run draws from ``keys[i]``
        (and, with ``per_member_lr``, at lr ``lrs[i]``).

        Returns the stacked state and each member's ``{"train_loss", "train_accuracy"}``.
        """
        n, extra = data_x.shape[0], self._lrs(lrs)
        perms = jnp.stack([jax.random.permutation(key, n) for key in keys])  # exactly each lone run's order
        sums = jnp.zeros((len(keys), n_sums(self.engine.rule)), jnp.float32)  # [loss, correct, count, ...]
        state, sums = run_calls(self, state, sums, (data_x, data_y, perms), on_progress, extra)  # Engine's loop
        rows = jax.device_get(sums)
        if on_progress is not None:
            on_progress(self.n_steps, self.n_steps)
        return state, [epoch_metrics(self.engine.rule, row, self.n_steps) for row in rows]

    def evaluate(self, state, data_x, data_y) -> list[dict]:
        """Each member's mean loss and accuracy over a dataset, in the lone engine's padded batches."""
        members = jax.tree.leaves(state.params)[0].shape[0]
        sums = jnp.zeros((members, 3), jnp.float32)
        for batch in padded_batches(data_x, data_y):  # the lone engine's padded batches
            sums = sums + self.eval_call(state, *batch)
        return [_means(row, "loss", "accuracy") for row in jax.device_get(sums)]


def _means(row, loss_key: str, accuracy_key: str) -> dict:
    """``{loss_key: loss / count, accuracy_key: correct / count}`` from a member's [loss, correct, count]."""
    loss, correct, count = (float(v) for v in row)
    return {loss_key: loss / count, accuracy_key: correct / count}
