"""The LearningRule interface: three pure, jit-compatible functions (DESIGN.md §4).

Shaped like optax's ``GradientTransformation``: a factory closes over the
hyperparameters and returns a ``LearningRule``; everything that changes while
training (feedback weights, inverses, random keys) lives in the rule's state pytree.

Signals are *per-example* error signals δ^l at each layer's pre-activation (the
derivative of that example's loss); updates average over the batch and have the
parameters' shapes. They go to the optax optimiser as if they were gradients,
unless ``applies_directly`` is set, in which case the engine adds them to the
parameters as they are (derivative-free rules such as local search).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import jax

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


class LearningRule(NamedTuple):
    """A learning rule: ``init``, ``compute_targets`` and ``local_update``."""

    init: InitFn
    compute_targets: TargetsFn
    local_update: UpdateFn
    applies_directly: bool = False


def stateless_init(key: jax.Array, net: Network, params: Params) -> RuleState:
    """``init`` for rules that keep no state."""
    del key, net, params
    return ()
