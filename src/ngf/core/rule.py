"""The LearningRule interface: three pure, jit-compatible functions (docs/rules.md#interface).

Shaped like optax's ``GradientTransformation``: a factory closes over the
hyperparameters and returns a ``LearningRule``; everything that changes while
training (feedback weights, inverses, random keys) lives in the rule's state pytree.

Signals are *per-example* error signals δ^l at each layer's pre-activation (the
derivative of that example's loss); updates average over the batch and have the
parameters' shapes. They go to the optax optimiser as if they were gradients,
unless ``applies_directly`` is set, in which case the engine adds them to the
parameters as they are (derivative-free rules such as local search).

A rule that must see the change the optimiser actually applied (Kolen–Pollack's
feedback weights receive it too) sets the optional ``apply_changes``: the engine
then hands it the parameters and the optimiser's change ΔW, inside the same jitted
step, and the rule returns the new parameters and its new state. Without it the
engine adds ΔW to the parameters (``optax.apply_updates``), as it always has.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import jax
import optax

from ngf.core.network import LayerTrace, Network, Params

RuleState = Any
Signals = Any


class InitFn(Protocol):
    def __call__(self, key: jax.Array, net: Network, params: Params) -> RuleState:
        """Return the rule's initial state for a network and its parameters."""


class TargetsFn(Protocol):
    def __call__(
        self, net: Network, params: Params, trace: tuple[LayerTrace, ...], labels: jax.Array,
        state: RuleState,
    ) -> tuple[Signals, RuleState]:
        """Turn a forward trace and the labels into per-layer targets or error signals."""


class UpdateFn(Protocol):
    def __call__(
        self, net: Network, params: Params, trace: tuple[LayerTrace, ...], signals: Signals,
        state: RuleState,
    ) -> tuple[Params, RuleState]:
        """Turn per-layer signals into per-layer updates shaped like the parameters."""


class ApplyFn(Protocol):
    def __call__(self, net: Network, params: Params, changes: Params, state: RuleState,
                 ) -> tuple[Params, RuleState]:
        """Apply the optimiser's change ΔW (shaped like the parameters) to them; see what was applied."""


class LearningRule(NamedTuple):
    """A learning rule: ``init``, ``compute_targets`` and ``local_update``, and optionally ``apply_changes``.

    ``apply_changes(net, params, changes, state) -> (params, state)`` is called with the
    change ΔW the optimiser produced this step (for ``applies_directly`` rules, the
    updates themselves); it returns the new parameters, usually ``params + ΔW`` plus
    whatever the rule adds (a decay), and the rule's state, which may record ΔW.
    ``None`` (the default) means ``optax.apply_updates(params, changes)``.
    """

    init: InitFn
    compute_targets: TargetsFn
    local_update: UpdateFn
    applies_directly: bool = False
    apply_changes: ApplyFn | None = None


def apply_changes(rule: LearningRule, net: Network, params: Params, changes: Params,
                  state: RuleState) -> tuple[Params, RuleState]:
    """The rule's ``apply_changes``, or θ ← θ + ΔW when it has none."""
    if rule.apply_changes is None:
        return optax.apply_updates(params, changes), state
    return rule.apply_changes(net, params, changes, state)


def stateless_init(key: jax.Array, net: Network, params: Params) -> RuleState:
    """``init`` for rules that keep no state."""
    del key, net, params
    return ()
