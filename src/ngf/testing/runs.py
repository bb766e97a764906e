"""The checks of whole runs: resuming from a checkpoint, and a stack of seeds against its lone runs."""

from __future__ import annotations

import jax
import optax

from ngf.core.rule import LearningRule
from ngf.core.stacked import StackedEngine
from ngf.runs import checkpoint
from ngf.testing.subject import CheckFailed, checking, epoch_key, first_difference, snapshot, subject


@checking("the checkpoint round trip")
def check_checkpoint_round_trip(rule: LearningRule, model="mlp", *, epochs: int = 2, **setup) -> None:
    """A run saved after its first epoch with ngf's checkpoint format (``ngf.runs.checkpoint``'s
    ``encode``), restored into a fresh run (``decode``, a new engine as a new process would
    build) and continued, ends bitwise equal to the uninterrupted run after ``epochs`` epochs.

    Fails for a rule that keeps anything that changes outside its state (a Python counter, a
    closure's array) or whose state does not survive the msgpack encoding. A rule that is not
    deterministic fails it too: ``check_determinism`` tells the two apart.
    """
    s = subject(rule, model, **setup)
    whole = s.engine()
    state, _ = s.train(whole, s.start(whole), range(1))
    blob, saved = checkpoint.encode(state, 1, [{"epoch": 1}]), snapshot(state)
    expected = snapshot(s.train(whole, state, range(1, epochs))[0])
    fresh = s.engine()
    restored, epoch, _ = checkpoint.decode(blob, s.start(fresh))
    where = first_difference(snapshot(restored), saved) if epoch == 1 else f" (its epoch, {epoch}, not 1)"
    if where is not None:
        raise CheckFailed(f"the state restored from its checkpoint differs from the saved one at state{where}")
    where = first_difference(snapshot(s.train(fresh, restored, range(1, epochs))[0]), expected)
    if where is not None:
        raise CheckFailed(f"the run resumed after epoch 1 differs from the uninterrupted run after epoch "
                          f"{epochs} at state{where}")


def _numbers(record: dict, evaluation: dict) -> dict:
    """An epoch's training metrics, the rule's metrics and the test metrics as one flat dict."""
    flat = {"train_loss": record["train_loss"], "train_accuracy": record["train_accuracy"],
            "test_loss": evaluation["loss"], "test_accuracy": evaluation["accuracy"]}
    return flat | {f"rule_metrics.{k}": v for k, v in record.get("rule_metrics", {}).items()}


def _lone(s, engine, seed: int, epochs: int) -> list[dict]:
    """Each epoch's numbers of the lone run with ``seed``."""
    state, history = s.start(engine, seed), []
    for epoch in range(epochs):
        state, record = s.train(engine, state, range(epoch, epoch + 1), seed)
        history.append(_numbers(record, engine.evaluate(state, s.data[2], s.data[3])))
    return history


@checking("the stack check")
def check_stack_matches_lone(rule: LearningRule, model="mlp", *, seeds: tuple = (0, 1), epochs: int = 2,
                             tolerance: float = 1e-4, **setup) -> None:
    """Seeds trained as one stack (``ngf.core.stacked.StackedEngine``, what ``--stack`` runs) give
    each seed's lone run: every epoch's training and test loss and accuracy, and the rule's
    metrics, within ``tolerance`` (relative, for values above 1), as tests/test_stacked.py asks.

    Each seed has its own parameters, rule key and data order. Fails for a rule that does
    not survive ``jax.vmap`` over the members (a Python branch on a value, a shape read
    from the batch of members, an in-place update of a closure's array). The runs take
    SGD: Adam's step divides by √v, so a gradient that is zero up to rounding (``usf``'s
    feedback cancels the error exactly for a unit whose weights above share one sign) is
    a full step in a direction the rounding of the batched arithmetic decides.
    """
    s = subject(rule, model, **setup)
    engine = s.engine(steps_per_call=6, optimizer=optax.sgd)  # one scan an epoch: two programs fewer
    lone = [_lone(s, engine, seed, epochs) for seed in seeds]
    stacked = StackedEngine(engine)
    state = stacked.init([jax.random.key(seed) for seed in seeds], [s.params(seed) for seed in seeds])
    for epoch in range(epochs):
        state, records = stacked.train_epoch(state, s.data[0], s.data[1], [epoch_key(seed, epoch) for seed in seeds])
        tests = stacked.evaluate(state, s.data[2], s.data[3])
        for i, seed in enumerate(seeds):
            mine, theirs = _numbers(records[i], tests[i]), lone[i][epoch]
            for key in theirs:
                if not abs(mine[key] - theirs[key]) <= tolerance * max(1.0, abs(theirs[key])):
                    raise CheckFailed(f"seed {seed} in a stack of {len(seeds)} has {key} {mine[key]:.7g} in epoch "
                                      f"{epoch + 1}; alone, {theirs[key]:.7g} (tolerance {tolerance:g})")
