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
engine adds ΔW to the parameters (``optax.apply_updates``).

A rule may also own arrays that learn by the run's optimiser (``init_params``: feedback
weights, inverses, heads), predict in its own way (``predict``), report per-step scalars
(``metrics``) and run its own passes instead of the engine's (``uses_trace=False``). Its
functions receive, besides their positional arguments, whichever of these keywords they
name (as a pluggy hook implementation receives the arguments it names): ``rule_params``
(its trainable parameters), ``key`` (a fresh PRNG key for this step, ``fold_in`` of the
run's rule key and the step number), ``step`` (the step number, from 0) and ``x`` (the
batch's inputs in [0, 1]). ``local_update`` may return an ``Updates`` instead of the
per-node updates alone, to update its parameters or report its metrics.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, NamedTuple, Protocol

import jax
import jax.numpy as jnp
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


class PredictFn(Protocol):
    def __call__(self, net: Network, params: Params, x: jax.Array, state: RuleState) -> jax.Array:
        """Scores [batch, classes] for inputs ``x`` in [0, 1]: the argmax is the prediction."""


class Updates(NamedTuple):
    """What ``local_update`` may return in place of the per-node updates alone.

    ``params``: the per-node updates (shaped like the forward parameters), as before.
    ``rule_params``: updates of the rule's trainable parameters, shaped like them; the run's
    optimiser treats them as gradients (descent direction: the optimiser subtracts them).
    ``metrics``: this step's scalars, one per name in ``LearningRule.metrics``; the engine
    averages them over the epoch's steps.
    ``logits``: the batch's scores [batch, classes] for the training loss and accuracy, for a
    rule with ``uses_trace=False`` (the engine ran no forward pass); without them the engine
    asks the rule's ``predict`` (one more pass).
    """

    params: Params
    rule_params: Any = None
    metrics: dict | None = None
    logits: jax.Array | None = None


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

    ``init_params(key, net, params) -> rule_params``: the rule's trainable parameters (any
    pytree), trained by the run's optimiser and schedule from the ``Updates.rule_params`` of
    ``local_update``, checkpointed, stacked and sharded as the forward parameters are.
    ``params_lr`` scales their learning rate against the run's ``--lr``; ``params_decay``
    says whether the run's ``--weight-decay`` applies to them.

    ``predict(net, params, x, state) -> scores``: what evaluation (test, validation, the
    divergence bound, the alignment's loss) reads instead of the network's logits.

    ``metrics``: the names of the scalars ``local_update`` reports in ``Updates.metrics``.

    ``uses_trace=False``: the rule runs its own passes; the engine runs no forward pass and
    hands ``compute_targets`` and ``local_update`` ``trace=None`` (they take ``x`` by name).
    """

    init: InitFn
    compute_targets: TargetsFn
    local_update: UpdateFn
    applies_directly: bool = False
    apply_changes: ApplyFn | None = None
    name: str | None = None
    needs_nonzero_weights: bool = False
    init_params: InitFn | None = None
    predict: PredictFn | None = None
    metrics: tuple = ()
    uses_trace: bool = True
    params_lr: float = 1.0
    params_decay: bool = True


#: the keywords a rule's function may name to receive them (``LearningRule``'s docstring)
EXTRAS = ("rule_params", "key", "step", "x")


@functools.lru_cache(maxsize=512)
def _named(function: Callable) -> frozenset | None:
    """The extra keywords ``function`` names (None: it takes ``**kwargs``, so all of them)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable: it names none
        return frozenset()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(p.name for p in parameters if p.name in EXTRAS
                     and p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD))


class Lazy(NamedTuple):
    """An extra keyword's value made only for a function that names it (the step key: a ``fold_in``)."""

    make: Callable


def wanted(function: Callable, available: dict) -> dict:
    """The entries of ``available`` (name → value, or ``Lazy`` maker) that ``function`` names."""
    names = _named(function)
    chosen = available if names is None else {k: v for k, v in available.items() if k in names}
    return {k: v.make() if isinstance(v, Lazy) else v for k, v in chosen.items()}


def call(function: Callable, *args, extras: dict):
    """``function(*args, **the extras it names)``: a rule function with the keywords it asked for."""
    return function(*args, **wanted(function, extras))


def as_updates(rule: LearningRule, result) -> Updates:
    """``local_update``'s first result as ``Updates`` (a bare per-node tuple is ``Updates(params)``)."""
    updates = result if isinstance(result, Updates) else Updates(result)
    reported = dict(updates.metrics or {})
    if set(reported) != set(rule.metrics):
        raise NgfError(f"rule {rule.name or 'custom'!r}: local_update reported the metrics "
                       f"{sorted(reported) or 'none'}; it declares {sorted(rule.metrics) or 'none'} "
                       f"(LearningRule.metrics)")
    return updates._replace(metrics=reported)


def node_updates(result) -> Params:
    """The per-node updates of ``local_update``'s first result, an ``Updates`` or the bare per-node tuple."""
    return result.params if isinstance(result, Updates) else result


def metric_vector(rule: LearningRule, metrics: dict) -> jax.Array:
    """The reported scalars as one float32 vector, in the order of ``rule.metrics``."""
    return jnp.stack([jnp.asarray(metrics[name], jnp.float32).reshape(()) for name in rule.metrics]
                     ) if rule.metrics else jnp.zeros(0, jnp.float32)


def predict(rule: LearningRule, net: Network, params: Params, x: jax.Array, state: RuleState,
            rule_params=()) -> jax.Array:
    """The rule's scores for inputs ``x`` in [0, 1]: its ``predict``, or the network's logits h^L."""
    if rule.predict is None:
        return net.logits(params, x)
    return call(rule.predict, net, params, x, state, extras={"rule_params": rule_params})


def init_params(rule: LearningRule, key: jax.Array, net: Network, params: Params):
    """The rule's first trainable parameters (``()`` for a rule without any)."""
    return () if rule.init_params is None else rule.init_params(key, net, params)


def apply_changes(rule: LearningRule, net: Network, params: Params, changes: Params,
                  state: RuleState, extras: dict | None = None) -> tuple[Params, RuleState]:
    """The rule's ``apply_changes`` (with the extra keywords it names), or θ ← θ + ΔW when it has none."""
    if rule.apply_changes is None:
        return optax.apply_updates(params, changes), state
    return call(rule.apply_changes, net, params, changes, state, extras=extras or {})


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
            _check_leaf(who, f"layer {l + 1}'s {_path_name(path)}", leaf, shape)
    return tuple(updates)


def checked_rule_updates(rule: LearningRule, rule_params, updates):
    """``updates`` of the rule's trainable parameters if shaped like them (zeros when none were given)."""
    if updates is None:
        return jax.tree.map(jnp.zeros_like, rule_params)
    who = f"rule {rule.name or 'custom'!r}"
    if jax.tree.structure(updates) != jax.tree.structure(rule_params):
        raise NgfError(f"{who}: Updates.rule_params is {_kind(updates)}; expected the structure of its "
                       f"trainable parameters (init_params), {jax.tree.structure(rule_params)}"[:300])
    for (path, leaf), theta in zip(jax.tree_util.tree_leaves_with_path(updates), jax.tree.leaves(rule_params)):
        _check_leaf(who, f"its parameter {_path_name(path)}", leaf, tuple(np.shape(theta)))
    return updates


def _check_leaf(who: str, what: str, leaf, shape: tuple) -> None:
    """One update: its parameter's shape, and floating point (integer updates would do nothing, or round)."""
    if np.shape(leaf) != shape:
        raise NgfError(f"{who}: the update of {what} has shape {tuple(np.shape(leaf))}; expected {shape}, "
                       "its parameter's")
    dtype = jnp.result_type(leaf)
    if not jnp.issubdtype(dtype, jnp.inexact):
        raise NgfError(f"{who}: the update of {what} is {dtype}; updates must be floating-point "
                       "(an integer update rounds the change away)")


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
