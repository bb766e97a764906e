"""One training step of a rule, and what it reads and reports (docs/rules.md#interface).

The step is forward (unless the rule runs its own passes) → ``compute_targets`` →
``local_update`` → the run's optimiser on the forward parameters (or the rule's
``apply_changes``) and on the rule's trainable parameters. Everything it changes is the
``TrainState``; what it reports is a vector of sums, [loss, correct, count] of the batch
and each of the rule's metrics, which the engine adds up on the device over an epoch.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from ngf.core.errors import NgfError
from ngf.core.losses import CE, Loss
from ngf.core.network import Dropped, MaskMismatch, Network
from ngf.core.rule_checks import check_state_kept, checked_pair, checked_rule_updates, checked_updates
from ngf.core.rule import LearningRule, Lazy, apply_changes, as_updates, call, metric_vector, predict
from ngf.data.batches import prepare_inputs


class TrainState(NamedTuple):
    """Everything that changes during training."""

    params: tuple
    opt_state: object
    rule_state: object
    rule_params: object = ()  # the rule's trainable parameters (``LearningRule.init_params``)
    rule_opt_state: object = ()  # the run's optimiser's state for them
    key: object = None  # the run's rule key: step n's key is fold_in(key, n)
    step: object = None  # steps taken, an int32 scalar


#: what ``fold_in`` adds to the rule's key for its parameters' key and for the step keys' base
PARAMS_KEY, STEPS_KEY = 1, 2


def batch_metrics(logits: jax.Array, labels: jax.Array, weights=None, loss: Loss = CE) -> jax.Array:
    """[sum of the loss (the network's), number correct (argmax), number of examples] over a batch.

    ``logits`` are whatever scores the run evaluates (the rule's ``predict``, else h^L)."""
    weights = jnp.ones(labels.shape, jnp.float32) if weights is None else weights
    correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
    return jnp.stack([jnp.sum(loss.per_example(logits, labels) * weights), jnp.sum(correct * weights),
                      jnp.sum(weights)])


def step_extras(state: TrainState, x: jax.Array) -> dict:
    """The keywords a rule's function may name (``ngf.core.rule.EXTRAS``); the key is drawn only if named."""
    return {"rule_params": state.rule_params, "key": Lazy(lambda: step_key(state)), "step": state.step, "x": x}


def step_key(state: TrainState) -> jax.Array:
    """This step's key, fold_in(k, n) of the state's key k and step count n (``Engine.init`` sets both)."""
    if state.key is None or state.step is None:
        raise NgfError("the rule asks for a step key, and this TrainState has none: build the state with "
                       "Engine.init (or give TrainState a key and a step count)")
    return jax.random.fold_in(state.key, state.step)


def rule_pass(net: Network, rule: LearningRule, state: TrainState, x: jax.Array, y: jax.Array):
    """forward (unless the rule runs its own passes) → compute_targets → local_update, on inputs x in [0, 1].

    Returns ``(updates, rule_state, logits)``: the rule's ``Updates`` (checked against the
    parameters' shapes while tracing, so at no cost per step), its advanced state, and the
    forward pass's logits (None when the rule ran its own passes).
    """
    extras = step_extras(state, x)
    logits, trace = net.forward(state.params, x) if rule.uses_trace else (None, None)
    signals, rule_state = checked_pair(rule, "compute_targets", call(
        rule.compute_targets, net, state.params, trace, y, state.rule_state, extras=extras, rule=rule), "signals")
    result, rule_state = checked_pair(rule, "local_update", call(
        rule.local_update, net, state.params, trace, signals, rule_state, extras=extras, rule=rule), "updates")
    check_state_kept(rule, state.rule_state, rule_state)
    updates = as_updates(rule, result)
    updates = updates._replace(params=checked_updates(rule, state.params, updates.params),
                               rule_params=checked_rule_updates(rule, state.rule_params, updates.rule_params))
    return updates, rule_state, logits


def make_train_step(net: Network, rule: LearningRule, optimizer: optax.GradientTransformation,
                    rule_optimizer: optax.GradientTransformation | None = None):
    """One training step: forward → compute_targets → local_update → optimiser.

    The rule's trainable parameters take the run's optimiser too (``rule_optimizer``: the
    same optimiser built with the rule's lr scale and decay choice), with a state of their own.
    """
    rule_optimizer = rule_optimizer or optimizer

    def step(state: TrainState, x: jax.Array, y: jax.Array):
        x = prepare_inputs(x)
        # the network this step trains: thinned by its dropout masks, if any (ngf.core.network)
        thinned = net.thinned(state.params, x, step_key(state)) if net.dropouts else net
        try:
            updates, rule_state, logits = rule_pass(thinned, rule, state, x, y)
        except MaskMismatch as exc:
            raise NgfError(f"rule {rule.name or 'custom'!r} cannot train with dropout: {exc}") from None
        check_masks_applied(thinned, rule)
        if rule.applies_directly:
            changes, opt_state = updates.params, state.opt_state
        else:
            changes, opt_state = optimizer.update(updates.params, state.opt_state, state.params)
        # θ ← θ + ΔW, or the rule's own use of the change actually applied (kp's B receives it too)
        params, rule_state = apply_changes(rule, net, state.params, changes, rule_state, step_extras(state, x))
        check_state_kept(rule, state.rule_state, rule_state)
        rule_params, rule_opt_state = state.rule_params, state.rule_opt_state
        if rule.init_params is not None:  # φ ← φ + Δφ, Δφ the run's optimiser's change for the rule's update
            rule_changes, rule_opt_state = rule_optimizer.update(updates.rule_params, rule_opt_state, rule_params)
            rule_params = optax.apply_updates(rule_params, rule_changes)
        if logits is None:  # the rule ran its own passes: its logits, or its prediction (one more pass)
            logits = updates.logits if updates.logits is not None else predict(
                rule, net, state.params, x, state.rule_state, state.rule_params)
        sums = jnp.concatenate([batch_metrics(logits, y, loss=net.loss), metric_vector(rule, updates.metrics)])
        steps = None if state.step is None else state.step + 1  # a state built by hand may count no steps
        return TrainState(params, opt_state, rule_state, rule_params, rule_opt_state, state.key, steps), sums

    return step


def check_masks_applied(net: Network, rule: LearningRule) -> None:
    """Refuse a rule that never ran a thinned node's activation f̃_l = m^l ⊙ f_l: its dropout would do nothing."""
    unused = [a.node for a in net.activations if isinstance(a, Dropped) and not a.used]
    if unused:
        raise NgfError(f"rule {rule.name or 'custom'!r} cannot train with dropout: it never applies node "
                       f"{unused[0]}'s activation f_l, where dropout acts (m ⊙ f_l); set dropout to 0")


def epoch_metrics(rule: LearningRule, sums, n_steps: int) -> dict:
    """An epoch's ``train_loss`` and ``train_accuracy`` and, as ``rule_metrics``, the rule's scalars
    averaged over its steps, from the summed [loss, correct, count, metrics...]."""
    loss, correct, count, *reported = (float(v) for v in sums)
    record = {"train_loss": loss / count, "train_accuracy": correct / count}
    if rule.metrics:
        record["rule_metrics"] = {name: value / n_steps for name, value in zip(rule.metrics, reported)}
    return record


def n_sums(rule: LearningRule) -> int:
    """The length of a training call's running sums: loss, correct, count and each metric of the rule."""
    return 3 + len(rule.metrics)


def evaluate_batch(net: Network, rule: LearningRule, state: TrainState, x, y, w) -> jax.Array:
    """``batch_metrics`` of the rule's scores (``predict``, else h^L) on one padded batch of raw inputs."""
    scores = predict(rule, net, state.params, prepare_inputs(x), state.rule_state, state.rule_params)
    return batch_metrics(scores, y, w, net.loss)
