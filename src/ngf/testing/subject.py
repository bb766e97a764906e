"""What every check of ``ngf.testing`` runs on: a tiny model, synthetic data, an engine, one failure style.

A check builds a ``Subject`` (the rule, a tiny network and random images) and trains it
with the engine ``ngf run`` uses, for a few steps of batch 16. ``checking`` wraps a check:
it runs it under ``jax_numpy_rank_promotion`` as ``ngf run`` does ('allow') and turns any
failure into one ``AssertionError`` line that names the rule, the check and what failed.
"""

from __future__ import annotations

import functools
import traceback
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ngf.core.engine import Engine
from ngf.core.step import TrainState
from ngf.core.errors import NgfError
from ngf.core.network import Network
from ngf.core.rule import LearningRule
from ngf.runs.compilecache import enable_compile_cache

#: one example's shape, the classes, the training and test examples, the batch: an epoch is 6 steps
SHAPE, CLASSES, N_TRAIN, N_TEST, BATCH = (6, 6, 1), 3, 96, 40, 16
#: the built-in models, small, by name
TINY = {"mlp": {"widths": (8, 7)}, "cnn": {"channels": (3, 4), "widths": (6,)},
        "resnet": {"stem": 3, "widths": (3, 4), "blocks": (1, 1)}}
LR = 1e-2
#: frames of these packages are not where a failure comes from: the rule's own file is
INNER = ("/jax/", "/jaxlib/", "/flax/", "/optax/", "/ngf/core/", "/ngf/testing/", "/ngf/runs/")


class CheckFailed(Exception):
    """What a check found wrong: ``checking`` makes it an ``AssertionError`` naming the rule."""


def model_factory(model) -> Callable:
    """A model factory ``(input_shape, n_classes, *, rngs, **options)`` for a name, a factory or a module."""
    if isinstance(model, nnx.Module):
        return lambda input_shape, n_classes, *, rngs, **options: model
    if callable(model):
        return model
    if model in TINY:
        from ngf.models.cnn import cnn
        from ngf.models.mlp import mlp
        from ngf.models.resnet import resnet
        return {"mlp": mlp, "cnn": cnn, "resnet": resnet}[model]
    from ngf.host.registry import load_registry
    return load_registry().get("model", model).factory


def tiny_network(model="mlp", model_opts: dict | None = None, input_shape: tuple = SHAPE,
                 n_classes: int = CLASSES, seed: int = 0) -> tuple[Network, tuple]:
    """``(net, params)`` of a small model: a built-in name (with ``TINY``'s options unless
    ``model_opts`` are given), a registered name, a model factory or an NNX module."""
    opts = TINY.get(model, {}) if model_opts is None and isinstance(model, str) else (model_opts or {})
    built = model_factory(model)(input_shape, n_classes, rngs=nnx.Rngs(seed), **opts)
    return Network.from_model(built, input_shape)


def tiny_data(input_shape: tuple = SHAPE, n_classes: int = CLASSES, seed: int = 0) -> tuple:
    """``(x_train, y_train, x_test, y_test)``: random uint8 images and labels, on the device."""
    rng = np.random.default_rng(seed)
    images = lambda n: jnp.asarray(rng.integers(0, 256, (n,) + tuple(input_shape), dtype=np.uint8))
    labels = lambda n: jnp.asarray(rng.integers(0, n_classes, n).astype(np.int32))
    return images(N_TRAIN), labels(N_TRAIN), images(N_TEST), labels(N_TEST)


class Subject(NamedTuple):
    """A rule on a tiny network with synthetic data; ``params(seed)`` draws fresh parameters."""

    rule: LearningRule
    net: Network
    params: Callable[[int], tuple]
    data: tuple

    def engine(self, steps_per_call: int = 4, optimizer: Callable = optax.adam) -> Engine:
        """A fresh engine (its programs not yet compiled): ``optimizer`` at lr 1e-2, the rule's own lr
        scale for its parameters; six steps an epoch in a call of four (a scan) and a last call of two."""
        rule_optimizer = optimizer(LR * self.rule.params_lr) if self.rule.init_params is not None else None
        return Engine(self.net, self.rule, optimizer(LR), BATCH, N_TRAIN, steps_per_call,
                      rule_optimizer=rule_optimizer)

    def start(self, engine: Engine, seed: int = 0) -> TrainState:
        """The first state of a run with ``seed`` (its parameters drawn with that seed)."""
        return engine.init(jax.random.key(seed), self.params(seed))

    def train(self, engine: Engine, state: TrainState, epochs: range, seed: int = 0):
        """``state`` after the epochs ``epochs`` (epoch e's order drawn from the seed's e-th key); the last
        epoch's metrics."""
        record = {}
        for epoch in epochs:
            state, record = engine.train_epoch(state, self.data[0], self.data[1], epoch_key(seed, epoch))
        return state, record

    def batch(self) -> tuple:
        """The first training batch ``(x, y)``, its images scaled to [0, 1]."""
        return self.data[0][:BATCH].astype(jnp.float32) / 255.0, self.data[1][:BATCH]


def epoch_key(seed: int, epoch: int) -> jax.Array:
    """The key epoch ``epoch`` of the run with ``seed`` draws its order from."""
    return jax.random.fold_in(jax.random.key(seed + 10_000), epoch)


def subject(rule: LearningRule, model="mlp", *, model_opts: dict | None = None, input_shape: tuple = SHAPE,
            n_classes: int = CLASSES) -> Subject:
    """The ``Subject`` of a check: ``rule`` on a tiny ``model`` (see ``tiny_network``) and random data."""
    if not isinstance(rule, LearningRule):
        raise CheckFailed(f"got a {type(rule).__name__}, not an ngf.LearningRule (call the rule's factory)")
    enable_compile_cache()  # as ngf run: a program compiled before (a twin engine's) is read back
    net, first = tiny_network(model, model_opts, input_shape, n_classes)
    fresh = {0: first}

    def params(seed: int) -> tuple:  # a copy each time: the engine donates what it is handed
        if seed not in fresh:
            fresh[seed] = tiny_network(model, model_opts, input_shape, n_classes, seed)[1]
        return jax.tree.map(jnp.array, fresh[seed])

    return Subject(rule, net, params, tiny_data(input_shape, n_classes))


def label(rule) -> str:
    """What messages call the rule: its ``name``, else 'custom' (as ngf's own errors do)."""
    return getattr(rule, "name", None) or "custom"


def origin(exc: BaseException) -> str:
    """`` (at FILE:LINE)`` of the innermost frame of ``exc`` outside JAX, Flax, optax and ngf's machinery."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not any(p in f.filename for p in INNER)]
    return f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""


def one_line(text, limit: int = 400) -> str:
    """``text`` on one line, at most ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def checking(what: str):
    """Decorate a check ``f(rule, model, **options)``: the rule renamed by ``name=``, the check run under
    ``rank_promotion=`` ('allow', as ``ngf run``), every failure one ``AssertionError`` line."""
    def wrap(check):
        @functools.wraps(check)
        def checked(rule, model="mlp", *, name: str | None = None, rank_promotion: str = "allow", **options):
            if name is not None and isinstance(rule, LearningRule):
                rule = rule._replace(name=name)
            who = f"rule {label(rule)!r} fails {what}"
            try:
                with jax.numpy_rank_promotion(rank_promotion):
                    return check(rule, model, **options)
            except CheckFailed as failure:
                raise AssertionError(one_line(f"{who}: {failure}")) from None
            except Exception as exc:  # noqa: BLE001 - the rule's own failure, named on one line
                message = str(exc).removeprefix(f"rule {label(rule)!r}: ").split("\n--------------------")[0]
                kind = "" if isinstance(exc, NgfError) else f"{type(exc).__name__}: "
                raise AssertionError(one_line(f"{who}: {kind}{message}") + origin(exc)) from exc
        return checked
    return wrap


def leaves(tree) -> list:
    """``(path, leaf)`` of every leaf, the path as ``jax.tree_util.keystr`` writes it."""
    return [(jax.tree_util.keystr(path), leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]


def bits(leaf) -> np.ndarray:
    """A leaf's value on the host (a PRNG key as its key data)."""
    is_key = jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key)
    return np.array(jax.random.key_data(leaf) if is_key else leaf)


def snapshot(tree):
    """A host copy of ``tree`` (keys as key data), kept while the engine donates the original."""
    return jax.tree.map(bits, tree)


def first_difference(a, b) -> str | None:
    """The path of the first leaf where ``a`` and ``b`` (host snapshots) differ in a single bit, or None."""
    if jax.tree.structure(a) != jax.tree.structure(b):
        return "(its structure)"
    for (path, x), y in zip(leaves(a), jax.tree.leaves(b)):
        if x.shape != y.shape or x.dtype != y.dtype or x.tobytes() != y.tobytes():
            return path or "(the leaf)"
    return None
