"""The checks of one training step: the contract, one compilation, determinism."""

from __future__ import annotations

import jax
import numpy as np

from ngf.core.errors import NgfError
from ngf.core.step import make_train_step, rule_pass
from ngf.core.rule import LearningRule, predict
from ngf.testing.subject import BATCH, CheckFailed, checking, first_difference, leaves, snapshot, subject


def same_types(got, expected, what: str) -> None:
    """``got`` has ``expected``'s pytree structure, and each leaf its shape and dtype; else ``CheckFailed``."""
    if jax.tree.structure(got) != jax.tree.structure(expected):
        raise CheckFailed(f"{what} has the structure {jax.tree.structure(got)}; expected "
                          f"{jax.tree.structure(expected)}")
    for (path, a), b in zip(leaves(got), jax.tree.leaves(expected)):
        if np.shape(a) != np.shape(b) or a.dtype != b.dtype:  # (ShapeDtypeStructs too)
            raise CheckFailed(f"{what}{path} is {a.dtype}{list(np.shape(a))}; expected {b.dtype}{list(np.shape(b))}")


def finite(tree, what: str) -> None:
    """Every leaf of ``tree`` (floats) is finite; else ``CheckFailed`` naming the first that is not."""
    for path, leaf in leaves(tree):
        if jax.dtypes.issubdtype(leaf.dtype, np.floating) and not np.all(np.isfinite(leaf)):
            raise CheckFailed(f"{what}{path} is not finite")


def _step(s):
    """A fresh engine, and the rule's ``Updates`` and state after ``rule_pass`` with its scores for the
    batch (one compiled program); the engine's whole training step is traced, not compiled."""
    engine = s.engine()
    train_step = make_train_step(s.net, s.rule, engine.optimizer, engine.rule_optimizer)

    def one(state, x, y):
        updates, rule_state, _ = rule_pass(s.net, s.rule, state, x, y)
        scores = predict(s.rule, s.net, state.params, x, state.rule_state, state.rule_params)
        return updates, rule_state, scores

    return engine, jax.jit(one), lambda state, x, y: jax.eval_shape(train_step, state, x, y)[0]


@checking("the contract check")
def check_rule_contract(rule: LearningRule, model="mlp", *, nonzero: bool = True, **setup) -> None:
    """One step of ``rule`` on a tiny ``model`` keeps ngf's contract with the engine.

    Checks: ``compute_targets`` and ``local_update`` return pairs; the updates have the
    parameters' structure, shapes and dtypes and are finite; the updates of the rule's
    trainable parameters (``init_params``) are shaped like them; the metrics reported are
    the metrics declared (``LearningRule.metrics``), each a finite scalar; the rule's state,
    parameters and the whole ``TrainState`` keep their structure, shapes and dtypes over a
    step (``apply_changes`` included); ``predict`` (or the logits), and ``Updates.logits``
    if given, are finite ``[batch, classes]`` scores; and, with ``nonzero``, every node with
    weights gets a non-zero update (a rule that updates some nodes only, such as local
    search's one candidate, passes ``nonzero=False``). ``**setup``: see ``ngf.testing``.
    """
    s = subject(rule, model, **setup)
    x, y = s.batch()
    engine, one, traced_step = _step(s)
    state = s.start(engine)
    updates, rule_state, scores = one(state, x, y)
    same_types(updates.params, state.params, "the update of params")
    finite(updates.params, "the update of params")
    if rule.init_params is not None:
        same_types(updates.rule_params, state.rule_params, "the update of rule_params")
        finite(updates.rule_params, "the update of rule_params")
    for name, value in updates.metrics.items():
        if np.size(value) != 1 or not np.isfinite(value).all():
            raise CheckFailed(f"its metric {name!r} is {value!r}; expected one finite number")
    same_types(rule_state, state.rule_state, "its state after a step, state")
    same_types(traced_step(state, x, y), state, "the TrainState after a step, state")
    classes = s.net.trace_shapes(state.params)[-1].pre.shape[-1]
    for what, value in (("its predict's scores", scores), ("Updates.logits", updates.logits)):
        if value is not None and (np.shape(value) != (BATCH, classes) or not np.isfinite(value).all()):
            raise CheckFailed(f"{what} are {np.shape(value)}; expected finite scores of shape {(BATCH, classes)}")
    if nonzero:
        for l, (theta, update) in enumerate(zip(state.params, updates.params)):
            if jax.tree.leaves(theta) and not any(np.any(u != 0) for u in jax.tree.leaves(update)):
                raise CheckFailed(f"node {l}'s update is zero (nonzero=False if the rule means it)")


@checking("the recompilation check")
def check_no_recompilation(rule: LearningRule, model="mlp", *, epochs: int = 2, **setup) -> None:
    """Training ``epochs`` epochs compiles each of the engine's programs once.

    Six steps an epoch, four per call: the scan of four steps, the shorter last call of two
    and the evaluation each compile at their first call and never again (and, from JAX's
    persistent cache, which the kit turns on as ``ngf run`` does, the other checks' twin
    engines read them back). A second
    compilation means something the step returns changes type, shape or a Python value
    from one step to the next (a state leaf that turns from weakly typed to float32, a
    Python counter). Also: the training loss and the rule's metrics stay finite.
    """
    s = subject(rule, model, **setup)
    engine = s.engine()
    state = s.start(engine)
    for epoch in range(epochs):
        state, record = s.train(engine, state, range(epoch, epoch + 1))
        engine.evaluate(state, s.data[2], s.data[3])
    for what, call in (("training call", engine.train_call), ("shorter last call", engine.tail_call),
                       ("evaluation", engine.eval_call)):
        if call._cache_size() != 1:
            raise CheckFailed(f"its {what} compiled {call._cache_size()} times in {epochs} epochs, not once: "
                              f"something in the state changes type, shape or Python value between steps")
    values = {"train_loss": record["train_loss"], **record.get("rule_metrics", {})}
    if not np.isfinite(list(values.values())).all():
        raise CheckFailed(f"after {epochs} epochs its training loss or metrics are not finite: {values}")


@checking("the determinism check")
def check_determinism(rule: LearningRule, model="mlp", *, epochs: int = 2, **setup) -> None:
    """Two runs from the same seed, each with its own engine (traced and compiled afresh), end in
    bitwise the same ``TrainState`` after ``epochs`` epochs.

    Fails for a rule whose randomness does not come from its ``key`` or its state: NumPy's
    or Python's random numbers, the time, anything drawn while the step is traced.
    """
    s = subject(rule, model, **setup)
    finals = []
    for _ in range(2):
        engine = s.engine()
        finals.append(snapshot(s.train(engine, s.start(engine), range(epochs))[0]))
    where = first_difference(*finals)
    if where is not None:
        raise CheckFailed(f"two runs from the same seed differ after {epochs} epochs at state{where}")


@checking("the refusal check")
def check_refuses_model(rule: LearningRule, model="cnn", *, match: str = "", **setup) -> None:
    """``rule`` refuses ``model`` as ``ngf run`` shows it: starting a run (the rule's ``init``, or its
    ``init_params``) raises ``NgfError`` in one line containing ``match``, before any training.

    For a rule whose idea does not apply to a model (Forward-Forward's label on a convolution):
    the refusal must name the rule and say why, not surface later as a shape error.
    """
    s = subject(rule, model, **setup)
    try:
        s.start(s.engine())
    except NgfError as refusal:
        text = str(refusal)
        if "\n" in text or match not in text:
            raise CheckFailed(f"its refusal of {model!r} is not one line containing {match!r}: {text!r}") from None
        return
    raise CheckFailed(f"it accepted {model!r}; expected a one-line NgfError when the run starts")
