"""The training engine: forward, targets, local updates and optimiser in one jitted step.

The whole dataset lives on the device; each epoch draws a permutation there and
the step slices its batch from it, so nothing crosses to the host inside an epoch
except a progress marker that is awaited only after the next call is queued.
Steps run ``steps_per_call`` at a time: a ``lax.scan`` over several steps, except for
convolutional networks on a CPU, which run one step per call (docs/benchmarks.md: a
convolution in a loop body ran 3× slower on XLA's CPU backend). Every scan has a
static length, the epoch's last, shorter call its own compiled program: a
``lax.cond`` masking steps inside the scan cost a device-to-host sync per step on a
GPU, which made the default mlp's epoch 4.4× slower on an H200 (docs/benchmarks.md).
"""

from __future__ import annotations

import math
import time
from typing import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from ngf.core.init import once_options
from ngf.core.network import Network
from ngf.core.parallel import DataParallel
from ngf.core.rule import LearningRule, call, init_params
from ngf.core.step import (  # noqa: F401 (the step's pieces, where callers have always found them)
    PARAMS_KEY, STEPS_KEY, TrainState, batch_metrics, epoch_metrics, evaluate_batch, make_train_step, n_sums,
    prepare_inputs, rule_pass, step_extras)
from ngf.data.batches import (  # noqa: F401 (the batches' pieces, where callers have always found them)
    EVAL_BATCH, first_eval_batch, padded_batches, take_batch)

PROGRESS_CALLS = 20  # calls per epoch when several steps share a call


def uses_convolution(model: nnx.Module) -> bool:
    """Whether the model holds a convolution (which runs faster one step per call on a CPU)."""
    return any(isinstance(node, (nnx.Conv, nnx.ConvTranspose)) for _, node in nnx.iter_graph(model))


def choose_steps_per_call(model: nnx.Module, n_steps: int) -> int:
    """The fast path: one step per call for convolutional models on a CPU, a scan otherwise.

    On a GPU the scan wins for both (LeNet-5 on an H200: 0.15 s per epoch against 0.69
    s one step per call; docs/benchmarks.md).
    """
    if uses_convolution(model) and jax.default_backend() == "cpu":
        return 1
    return max(1, math.ceil(n_steps / PROGRESS_CALLS))


def run_calls(engine, state, sums, data: tuple, on_progress=None, extra: tuple = ()):
    """An epoch's calls, ``call(state, sums, *data, start, *extra)``: ``engine.train_call`` each, the
    shorter ``tail_call`` last if any; the previous call is awaited for ``on_progress`` only once the
    next is queued, so the device never waits for the host. Returns ``(state, sums)``."""
    pending = None
    for c in range(engine.n_calls):
        last = c == engine.n_calls - 1 and engine.tail_call is not None
        call = engine.tail_call if last else engine.train_call
        state, sums = call(state, sums, *data, c * engine.steps_per_call, *extra)
        if on_progress is not None:
            if pending is not None:
                pending[1].block_until_ready()
                on_progress(pending[0], engine.n_steps)
            pending = (min((c + 1) * engine.steps_per_call, engine.n_steps), sums)
    return state, sums


class Engine:
    """Runs epochs of a rule on a network, keeping data and state on the device."""

    def __init__(self, net: Network, rule: LearningRule, optimizer: optax.GradientTransformation,
                 batch_size: int, n_train: int, steps_per_call: int, parallel: DataParallel | None = None,
                 rule_optimizer: optax.GradientTransformation | None = None):
        self.net, self.rule, self.optimizer = net, rule, optimizer
        self.rule_optimizer = rule_optimizer or optimizer
        self.batch_size, self.parallel = batch_size, parallel
        if parallel is not None:
            parallel.check_batch(batch_size)
        self.n_steps = n_train // batch_size  # the last partial batch of each epoch is dropped
        self.steps_per_call = max(1, min(steps_per_call, self.n_steps))
        self.n_calls = math.ceil(self.n_steps / self.steps_per_call)
        self.train_call = jax.jit(self._make_call(self.steps_per_call), donate_argnums=0)
        tail = self.n_steps % self.steps_per_call  # the last call's steps, when fewer
        self.tail_call = jax.jit(self._make_call(tail), donate_argnums=0) if tail else None

        def eval_batch(state, x, y, w):  # the program's name in JAX's logs: jit(eval_batch)
            return evaluate_batch(net, rule, state, x, y, w)

        self.eval_call = jax.jit(eval_batch)

        def fresh(key, params):  # the first state (``init``); the program's name in JAX's logs: jit(fresh)
            rule_params = init_params(self.rule, jax.random.fold_in(key, PARAMS_KEY), self.net, params)
            rule_opt_state = self.rule_optimizer.init(rule_params) if self.rule.init_params is not None else ()
            rule_state = call(self.rule.init, key, self.net, params, extras={}, rule=self.rule)
            return TrainState(params, self.optimizer.init(params), rule_state,
                              rule_params, rule_opt_state, jax.random.fold_in(key, STEPS_KEY),
                              jnp.zeros((), jnp.int32))

        # one program per engine: a stack's members (ngf.core.stacked) share it, traced once
        self.fresh, self.fresh_call = fresh, jax.jit(fresh, compiler_options=once_options())

    def init(self, key: jax.Array, params: tuple) -> TrainState:
        """Fresh optimiser and rule state for ``params``, drawn by one compiled program.

        Op by op, every leaf shape of the optimiser's zeros and of a rule's random feedback
        was a compilation of its own (a 3-layer mlp: 7 for Adam's zeros, 11 more for fa's
        feedback; tests/test_startup.py); ``LearningRule.init`` is
        jit-compatible by contract. A rule whose ``init`` cannot be traced (it reads a value)
        is initialised eagerly, which also names its failures.
        """
        try:
            state = self.fresh_call(key, params)
        except Exception:  # noqa: BLE001 - any failure: the eager call below raises it again, or succeeds
            state = self.fresh(key, params)
        return self.place(state)

    def place(self, tree):
        """Put arrays where the engine wants them: replicated across its devices, if several."""
        return tree if self.parallel is None else self.parallel.replicate(tree)

    def _make_call(self, length: int):
        """A call that runs ``length`` steps from step ``start`` (one step, or a scan of fixed length)."""
        step = make_train_step(self.net, self.rule, self.optimizer, self.rule_optimizer)
        batch = self.batch_size
        split = (lambda a: a) if self.parallel is None else self.parallel.split_batch

        def one(carry, index, data_x, data_y, perm):
            x, y = take_batch(data_x, data_y, perm, index, batch)
            state, metrics = step(carry[0], split(x), split(y))
            return state, carry[1] + metrics

        def train_steps(state, sums, data_x, data_y, perm, start):
            if length == 1:
                return one((state, sums), start, data_x, data_y, perm)

            def body(carry, i):
                return one(carry, start + i, data_x, data_y, perm), None

            return jax.lax.scan(body, (state, sums), jnp.arange(length))[0]

        return train_steps

    def compile(self, state: TrainState, data_x, data_y, key: jax.Array, *eval_sets) -> float:
        """Compile every program an epoch runs before the first one; the seconds it took.

        The training call (and the shorter last one) is compiled ahead of time with the
        epoch's own arguments (``state``, the data, the permutation drawn from
        ``fold_in(key, 0)``), and so is the evaluation of each ``(x, y)`` in
        ``eval_sets``: their jitted functions find the programs compiled at their first
        call, so an epoch's time is its training alone. From JAX's persistent cache, a
        compilation is a read (README.md, Start-up).
        """
        t0 = time.perf_counter()
        perm = self.place(jax.random.permutation(jax.random.fold_in(key, 0), data_x.shape[0]))
        sums = self.place(jnp.zeros(n_sums(self.rule), jnp.float32))
        self.train_call.lower(state, sums, data_x, data_y, perm, 0).compile()
        if self.tail_call is not None:
            self.tail_call.lower(state, sums, data_x, data_y, perm, (self.n_calls - 1) * self.steps_per_call).compile()
        for x, y in eval_sets:
            batch = self.place(first_eval_batch(x, y))
            self.eval_call.lower(state, *batch).compile()
        jax.block_until_ready(sums)
        return time.perf_counter() - t0

    def train_epoch(self, state: TrainState, data_x, data_y, key: jax.Array,
                    on_progress: Callable[[int, int], None] | None = None):
        """One epoch over a fresh permutation drawn from ``key``; returns (state, metrics)."""
        perm = self.place(jax.random.permutation(key, data_x.shape[0]))
        state, sums = run_calls(self, state, self.place(jnp.zeros(n_sums(self.rule), jnp.float32)),
                                (data_x, data_y, perm), on_progress)
        record = epoch_metrics(self.rule, jax.device_get(sums), self.n_steps)
        if on_progress is not None:
            on_progress(self.n_steps, self.n_steps)
        return state, record

    def evaluate(self, state: TrainState, data_x, data_y) -> dict:
        """Mean loss and accuracy of the rule's prediction (``predict``, else the logits) over a dataset,
        in fixed-size padded batches."""
        sums = jnp.zeros(3, jnp.float32)
        for batch in padded_batches(data_x, data_y):
            sums = sums + self.eval_call(state, *self.place(batch))
        loss, correct, count = (float(v) for v in jax.device_get(sums))
        return {"loss": loss / count, "accuracy": correct / count}
