"""The checks of what a rule's functions return and raise, each failure one ``NgfError`` line naming the rule.

``ngf.core.rule.call`` turns what a rule's function raises into one line (``failure``); the
engine checks a step's pair results, updates and state (``checked_pair``, ``checked_updates``,
``checked_rule_updates``, ``check_state_kept``) while tracing, so at no cost per step.
"""

from __future__ import annotations

import traceback

import jax
import jax.numpy as jnp
import numpy as np

from ngf.core.errors import NgfError


def failure(exc: BaseException) -> str:
    """``raised ValueError: boom (at FILE:LINE)``, or ``called sys.exit(5)``, for an exception a rule raised."""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r}), which a rule may not do"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/jax/" not in f.filename
              and "/jaxlib/" not in f.filename and not f.filename.endswith("/ngf/core/rule.py")]
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    text = str(exc).split("\n--------------------")[0]
    return f"raised {type(exc).__name__}: {text}{where}"


def check_state_kept(rule, before, after) -> None:
    """The rule's state after a step has the structure, shapes and dtypes it had before (a scan over
    steps carries it; one that changes would fail deep inside JAX)."""
    who = f"rule {rule.name or 'custom'!r}"
    if jax.tree.structure(before) != jax.tree.structure(after):
        raise NgfError(" ".join(f"{who}: its state changed structure in one step, to {_kind(after)} "
                                f"{jax.tree.structure(after)}; expected {jax.tree.structure(before)}, as it got "
                                "it".split())[:500])
    for (path, new), old in zip(jax.tree_util.tree_leaves_with_path(after), jax.tree.leaves(before)):
        got, expected = _leaf_type(new), _leaf_type(old)
        if got != expected:
            raise NgfError(f"{who}: its state{jax.tree_util.keystr(path)} changed in one step to {got}; "
                           f"expected {expected}, as it got it")


def _leaf_type(leaf) -> str:
    """``float32[3, 4]``: a leaf's dtype and shape."""
    return f"{jnp.result_type(leaf)}{list(np.shape(leaf))}"


def checked_pair(rule, function: str, result, second: str) -> tuple:
    """``result`` of the rule's ``function``, which must be a pair (what, ``second``)."""
    if not (isinstance(result, tuple) and len(result) == 2):
        raise NgfError(f"rule {rule.name or 'custom'!r}: {function} must return a pair ({second}, state), "
                       f"got {_kind(result)}")
    return result


def checked_updates(rule, params, updates) -> tuple:
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


def checked_rule_updates(rule, rule_params, updates):
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
