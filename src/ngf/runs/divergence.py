"""Divergence: a run stops at the end of the epoch whose loss or parameters went bad.

One check per epoch, after the epoch's metrics have come back to the host anyway:
one jitted reduction over the parameters (are they all finite?) and a look at the
epoch's training and test loss. Nothing is synchronised inside an epoch: a step
whose loss is NaN or infinite makes the epoch's summed training loss so too.

An epoch has diverged when

* a parameter is NaN or infinite, or
* its training or test loss is NaN or infinite, or
* a loss exceeds ``ratio`` × max(initial loss, ln C), where the initial loss is the
  untrained network's mean loss (the network's, --loss) on (up to) the first 1,000 test examples and
  C the number of classes (``RunConfig.divergence_ratio``, default 1000; 0 turns this
  bound off). An optimiser pushed far too hard (``--lr 1e6`` with Adam on the default
  mlp) need not produce a NaN: its ReLUs die and its logits shrink again, but its
  first epoch's mean training loss is around 1e21.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

FIRST_TEST_EXAMPLES = 1000


@jax.jit
def all_finite(tree) -> jax.Array:
    """Whether every floating-point leaf of ``tree`` is free of NaN and infinity (one device scalar)."""
    leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)
              if jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


class DivergenceCheck:
    """Decides, once per epoch, whether a run has diverged; ``bound`` is the largest sane loss."""

    def __init__(self, initial_loss: float, n_classes: int, ratio: float):
        base = max(math.log(max(n_classes, 2)), initial_loss if math.isfinite(initial_loss) else 0.0)
        self.initial_loss = initial_loss
        self.bound = ratio * base if ratio and ratio > 0 else math.inf

    def problem(self, record: dict, params) -> str | None:
        """What went wrong in the epoch of ``record`` (with the epoch's final ``params``), or None."""
        found, too_large = [], []
        if not bool(all_finite(params)):
            found.append("a parameter is NaN or infinite")
        for key, label in (("train_loss", "training loss"), ("test_loss", "test loss")):
            value = record[key]
            if not math.isfinite(value):
                found.append(f"the {label} is {value}")
            elif value > self.bound:
                too_large.append(f"the {label} {value:.3g}")
        if too_large:
            found.append(f"{' and '.join(too_large)} exceed{'s' if len(too_large) == 1 else ''} "
                         f"{self.bound:.3g} (divergence-ratio × max(initial loss {self.initial_loss:.3g}, ln C))")
        return "; ".join(found) or None
