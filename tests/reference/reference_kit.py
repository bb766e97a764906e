"""Comparing one step of an ngf rule with a port of its authors' code (tests/reference/).

Each ``test_ref_<rule>.py`` gives ngf and the port identical weights, biases and
feedback in float64, takes one step of each, and asserts the updates are equal up
to a constant factor that the test names and docs/rules.md ("Compared with the
authors' code") documents. ``assert_flip_detected`` shows the comparison can fail:
the port's update with one sign flipped is refused.
"""

from __future__ import annotations

import contextlib

import jax
import numpy as np

RTOL = 1e-6


@contextlib.contextmanager
def float64():
    """JAX computes in float64 inside the block (and in float32 again after it)."""
    with jax.enable_x64(True):
        yield


def as_float64(tree):
    """Every floating leaf of ``tree`` as a float64 array (keys and integers kept)."""
    def cast(a):
        if hasattr(a, "dtype") and np.issubdtype(a.dtype, np.floating):
            return jax.numpy.asarray(a, jax.numpy.float64)
        return a
    return jax.tree.map(cast, tree)


def assert_same_step(ngf_updates, port_updates, factor: float = 1.0, rtol: float = RTOL):
    """ngf's updates equal ``factor`` × the port's, array by array, within ``rtol`` of the largest entry."""
    ngf_leaves = [np.asarray(a, np.float64) for a in jax.tree.leaves(ngf_updates)]
    port_leaves = [np.asarray(a, np.float64) for a in jax.tree.leaves(port_updates)]
    assert len(ngf_leaves) == len(port_leaves), (len(ngf_leaves), len(port_leaves))
    for i, (got, want) in enumerate(zip(ngf_leaves, port_leaves)):
        assert got.shape == want.shape, (i, got.shape, want.shape)
        want = factor * want
        scale = max(float(np.abs(want).max()), 1e-300)
        assert float(np.abs(got - want).max()) <= rtol * scale, (i, float(np.abs(got - want).max()), scale)


def assert_flip_detected(ngf_updates, port_updates, factor: float = 1.0, leaf: int = 0):
    """The comparison refuses the port's updates with leaf ``leaf``'s sign flipped (the test can fail)."""
    leaves, treedef = jax.tree.flatten(port_updates)
    leaves = [(-np.asarray(a) if i == leaf else a) for i, a in enumerate(leaves)]
    flipped = jax.tree.unflatten(treedef, leaves)
    try:
        assert_same_step(ngf_updates, flipped, factor)
    except AssertionError:
        return
    raise AssertionError(f"the comparison did not notice leaf {leaf}'s sign flipped")
