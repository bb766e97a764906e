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
import optax

from ngf.core.rule_checks import failure
from ngf.core.errors import NgfError
from ngf.core.network import LayerTrace, Network, Params, updates_from_deltas

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

    ``params``: the per-node updates (shaped like the forward parameters).
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


def per_node_updates(net: Network, params: Params, trace: tuple[LayerTrace, ...], deltas: Signals,
                     state: RuleState) -> tuple[Params, RuleState]:
    """``local_update`` for rules whose signals are per-example δ^l: ``updates_from_deltas``, state unchanged."""
    return updates_from_deltas(net, params, trace, deltas), state


class LearningRule(NamedTuple):
    """A learning rule: ``init``, ``compute_targets`` and ``local_update``, and optionally ``apply_changes``.

    ``local_update`` defaults to ``per_node_updates``: each node's update from its own δ^l,
    averaged over the batch, for a rule whose ``compute_targets`` returns the δ^l.

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
    local_update: UpdateFn = per_node_updates
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


def call(function: Callable, *args, extras: dict, rule: LearningRule | None = None):
    """``function(*args, **the extras it names)``: a rule function with the keywords it asked for.

    With ``rule``, what the function raises (or a ``sys.exit`` in it) becomes one ``NgfError`` line
    naming the rule, the function and where it failed: a plugin's failure never ends ngf with a
    traceback or with its own exit status.
    """
    try:
        return function(*args, **wanted(function, extras))
    except NgfError:
        raise
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the rule's own failure, named on one line
        if rule is None:
            raise
        raise NgfError(" ".join(f"rule {rule.name or 'custom'!r}: its {getattr(function, '__name__', 'function')} "
                                f"{failure(exc)}".split())[:500]) from None


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
    return call(rule.predict, net, params, x, state, extras={"rule_params": rule_params}, rule=rule)


def init_params(rule: LearningRule, key: jax.Array, net: Network, params: Params):
    """The rule's first trainable parameters (``()`` for a rule without any)."""
    return () if rule.init_params is None else call(rule.init_params, key, net, params, extras={}, rule=rule)


def apply_changes(rule: LearningRule, net: Network, params: Params, changes: Params,
                  state: RuleState, extras: dict | None = None) -> tuple[Params, RuleState]:
    """The rule's ``apply_changes`` (with the extra keywords it names), or θ ← θ + ΔW when it has none."""
    if rule.apply_changes is None:
        return optax.apply_updates(params, changes), state
    return call(rule.apply_changes, net, params, changes, state, extras=extras or {}, rule=rule)


def stateless_init(key: jax.Array, net: Network, params: Params) -> RuleState:
    """``init`` for rules that keep no state."""
    del key, net, params
    return ()
