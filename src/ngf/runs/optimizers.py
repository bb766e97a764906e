"""The optimisers of ``--optimizer``: each one's name, how it is built from the lr, and whether
``--momentum`` applies to it (README, Options)."""

from __future__ import annotations

from typing import Callable, NamedTuple

import optax


class Optimizer(NamedTuple):
    """One optimiser: ``build(lr)`` with its own momentum, or ``build(lr, momentum=M)`` where ``--momentum``
    applies (``takes_momentum``), M replacing its own."""

    build: Callable[..., optax.GradientTransformation]
    takes_momentum: bool


TABLE: dict[str, Optimizer] = {
    "adam": Optimizer(optax.adam, takes_momentum=False),
    "adamw": Optimizer(optax.adamw, takes_momentum=False),
    "sgd": Optimizer(optax.sgd, takes_momentum=True),
    "momentum": Optimizer(lambda lr, momentum=0.9: optax.sgd(lr, momentum=momentum), takes_momentum=True),
    "nesterov": Optimizer(lambda lr, momentum=0.9: optax.sgd(lr, momentum=momentum, nesterov=True),
                          takes_momentum=True),
    "rmsprop": Optimizer(optax.rmsprop, takes_momentum=True),
}

#: each optimiser's factory of the lr alone (``ngf.OPTIMIZERS``), in ``TABLE``'s order
OPTIMIZERS: dict[str, Callable[[float], optax.GradientTransformation]] = {
    name: optimizer.build for name, optimizer in TABLE.items()}
MOMENTUM_OPTIMIZERS = tuple(name for name, optimizer in TABLE.items() if optimizer.takes_momentum)


def optimizer_named(name: str, lr, momentum: float | None = None) -> optax.GradientTransformation:
    """The optimiser ``name`` with learning rate (or schedule) ``lr``; ``momentum`` None: the optimiser's own."""
    build = TABLE[name].build
    return build(lr) if momentum is None else build(lr, momentum=momentum)
