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
import numpy as np
import optax

from ngf.core.errors import NgfError
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

    ``name`` (optional) is what error messages and, for a rule passed to ``ngf.run`` as an
    object, ``summary.json`` call the rule; a registered rule gets its registered name.

    ``needs_nonzero_weights`` declares that the rule reads the forward weights' values
    (sign-symmetric feedback is sign(θ)): a run refuses ``--init zeros`` for it.
    """

    init: InitFn
    compute_targets: TargetsFn
    local_update: UpdateFn
    applies_directly: bool = False
    apply_changes: ApplyFn | None = None
    name: str | None = None
    needs_nonzero_weights: bool = False


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


def checked_pair(rule: LearningRule, function: str, result, second: str) -> tuple:
    """``result`` of the rule's ``function``, which must be a pair (what, ``second``)."""
    if not (isinstance(result, tuple) and len(result) == 2):
        raise NgfError(f"rule {rule.name or 'custom'!r}: {function} must return a pair ({second}, state), "
                       f"got {_kind(result)}")
    return result


def checked_updates(rule: LearningRule, params: Params, updates) -> tuple:
    """``updates`` if they are one pytree per node, each with its parameters' structure and shapes.

    Called while the training step is traced, so it runs once per compiled step and costs
    nothing per step; a mismatch is named (rule, layer, expected shape) before JAX meets it.
    """
    who = f"rule {rule.name or 'custom'!r}"
    if not isinstance(updates, (tuple, list)) or len(updates) != len(params):
        raise NgfError(f"{who}: local_update returned {_kind(updates)} as its updates; the network has "
                       f"{len(params)} layers, and each needs an update shaped like its parameters")
    for l, (update, theta) in enumerate(zip(updates, params)):
        expected = {_path_name(path): np.shape(leaf) for path, leaf in jax.tree_util.tree_leaves_with_path(theta)}
        if jax.tree.structure(update) != jax.tree.structure(theta):
            raise NgfError(f"{who}: the update of layer {l + 1} is {_kind(update)}; expected the structure "
                           f"of its parameters, {_shapes(expected)}")
        for (path, leaf), shape in zip(jax.tree_util.tree_leaves_with_path(update), expected.values()):
            if np.shape(leaf) != shape:
                raise NgfError(f"{who}: the update of layer {l + 1}'s {_path_name(path)} has shape "
                               f"{tuple(np.shape(leaf))}; expected {shape}, its parameter's")
    return tuple(updates)


def _path_name(path) -> str:
    """``linear.kernel`` for a parameter's pytree path (an NNX variable's ``.value`` left out)."""
    parts = [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path]
    return ".".join(p for p in parts if p != "value") or "(the leaf)"


def _shapes(expected: dict) -> str:
    """Parameter paths and shapes on one short line: ``{linear.kernel: (36, 8), ...}`` (``{}``: none)."""
    return ("{" + ", ".join(f"{path}: {shape}" for path, shape in expected.items()) + "}")[:200]


def _kind(value) -> str:
    """What a rule returned, in a few words (its type, its length, its shapes)."""
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}" if value else f"an empty {type(value).__name__}"
    if hasattr(value, "shape"):
        return f"an array of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"
