"""A test plugin: rule ``nan-bp``, backprop whose updates become NaN for some seeds (their rule key's).

Load it with ``--plugin ngf_nan_seed``: a run of seed s with ``poisoned(s)`` trains as
``bp`` for ``CLEAN_STEPS`` steps (the first epoch of ``tiny`` at batch 32), then its
updates are NaN, so it diverges in its second epoch; other seeds train as ``bp``. A
stack of seeds can so hold one diverging member beside healthy ones (tests/test_stacked.py).
"""

import jax
import jax.numpy as jnp

from ngf.core.init import seed_key
from ngf.core.rule import LearningRule
from ngf.host.hookspecs import hookimpl
from ngf.plugins.bp import bp

CLEAN_STEPS = 6  # tiny's 192 training examples at batch 32


def _bad(key) -> jax.Array:
    """Whether the rule key ``key`` poisons its run (a fair coin drawn from it)."""
    return jax.random.uniform(key) < 0.5


def poisoned(seed: int) -> bool:
    """Whether a run of ``seed`` diverges under ``nan-bp`` (its rule key is the first of the seed's split)."""
    return bool(_bad(jax.random.split(seed_key(seed))[0]))


def nan_bp() -> LearningRule:
    """``bp`` with every update × NaN after ``CLEAN_STEPS`` steps where the run's rule key says so."""
    base = bp()

    def init(key, net, params):
        return _bad(key), jnp.zeros((), jnp.int32)  # (poisoned?, steps taken)

    def local_update(net, params, trace, deltas, state):
        updates, _ = base.local_update(net, params, trace, deltas, ())
        bad, steps = state
        factor = jnp.where(bad & (steps >= CLEAN_STEPS), jnp.nan, 1.0)
        return jax.tree.map(lambda u: u * factor, updates), (bad, steps + 1)

    return LearningRule(init, base.compute_targets, local_update)


@hookimpl
def ngf_register_rules():
    """Register ``nan-bp``."""
    return {"nan-bp": nan_bp}
