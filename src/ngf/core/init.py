"""Initialisation schemes for any model: ``--init NAME[:SCALE]``.

A scheme re-initialises the per-layer parameter pytrees that ``Network.from_model``
returns, so it works for every model without knowing its layer types: every leaf
with two or more axes is a weight (a dense kernel, a convolution's window) and gets
the scheme; every leaf with fewer axes is a bias and becomes zero, except under
``torch``, which draws it as PyTorch does from the fan-in of the weight beside it (in
the same module). ``default`` keeps what the model's own layers drew. Fans follow JAX's
convention: the last axis is fan-out, the one before it fan-in, leading axes (a
convolution's window) multiply both.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.nn import initializers as jinit

from ngf.core.errors import NgfError

INIT_STREAM = 0x1D17  # folded into the run's seed, so the rule's and data's keys stay as they were
WORD = 2 ** 32


class Scheme(NamedTuple):
    """An initialiser ``make(scale) -> jax initializer`` and the scale it takes by default."""

    make: Callable[[float], Callable]
    default_scale: float | None  # None: the scheme takes no scale
    help: str
    biases: bool = False  # True: biases drawn U(−1/√fan_in, 1/√fan_in) from their weight's fan-in, not zeroed


def _gained(initializer: Callable) -> Callable[[float], Callable]:
    """A variance-scaling initialiser multiplied by a gain."""
    def make(gain: float):
        base = initializer()
        return lambda key, shape, dtype: gain * base(key, shape, dtype)
    return make


def _symmetric_uniform(scale: float) -> Callable:
    """U(-scale, scale) (JAX's own ``uniform`` draws from [0, scale))."""
    return lambda key, shape, dtype: jax.random.uniform(key, shape, dtype, -scale, scale)


def fan_in(shape: tuple) -> int:
    """A weight's fan-in: its second-to-last axis times its leading ones (in_channels·kh·kw of a convolution)."""
    return shape[-2] * math.prod(shape[:-2])


def _torch_weights(key, shape, dtype) -> jax.Array:
    """PyTorch's default of ``nn.Linear`` and ``nn.Conv2d``: kaiming_uniform(a=√5), i.e.
    gain √(2/(1+5)) times bound √3/√fan_in, which is U(−1/√fan_in, 1/√fan_in)."""
    bound = 1.0 / math.sqrt(fan_in(shape))
    return jax.random.uniform(key, shape, dtype, -bound, bound)


SCHEMES: dict[str, Scheme] = {
    "default": Scheme(lambda s: None, None, "the layers' own initialisers"),
    "zeros": Scheme(lambda s: jinit.zeros, None, "all weights 0"),
    "normal": Scheme(lambda s: jinit.normal(s), 0.01, "N(0, SCALE²)"),
    "uniform": Scheme(_symmetric_uniform, 0.05, "U(-SCALE, SCALE)"),
    "glorot": Scheme(_gained(jinit.glorot_uniform), 1.0, "Glorot & Bengio 2010 uniform, × SCALE"),
    "glorot_normal": Scheme(_gained(jinit.glorot_normal), 1.0, "Glorot normal, × SCALE"),
    "he": Scheme(_gained(jinit.he_normal), 1.0, "He et al. 2015 normal, × SCALE"),
    "he_uniform": Scheme(_gained(jinit.he_uniform), 1.0, "He uniform, × SCALE"),
    "lecun": Scheme(_gained(jinit.lecun_normal), 1.0, "LeCun normal, × SCALE"),
    "orthogonal": Scheme(lambda s: jinit.orthogonal(s), 1.0, "Saxe et al. 2014 orthogonal, gain SCALE"),
    "torch": Scheme(lambda s: _torch_weights, None, "PyTorch's nn.Linear and nn.Conv2d default: weights and "
                    "biases U(−1/√fan_in, 1/√fan_in)", biases=True),
}


def parse_init(spec: str) -> tuple[str, float | None]:
    """``"normal:0.1"`` → ``("normal", 0.1)``; the scale defaults per scheme."""
    if not isinstance(spec, str):
        raise NgfError(f"init must be NAME or NAME:SCALE, got {spec!r}")
    name, sep, text = spec.strip().partition(":")
    if name not in SCHEMES:
        raise NgfError(f"unknown init {name!r}; valid inits: {', '.join(SCHEMES)}")
    scheme = SCHEMES[name]
    if not sep:
        return name, scheme.default_scale
    if scheme.default_scale is None:
        raise NgfError(f"init {name!r} takes no scale, got {spec!r}")
    try:
        scale = float(text)
    except ValueError:
        raise NgfError(f"init {name!r} expects a number after ':', got {text!r}") from None
    if not scale > 0:
        raise NgfError(f"init scale must be positive, got {text!r}")
    if not math.isfinite(scale):  # infinite weights would train an epoch, then "diverge"
        raise NgfError(f"init scale must be a finite number, got {text!r}")
    return name, scale


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))  # one compilation per scheme and shapes, reused
def _draw(key: jax.Array, name: str, scale: float | None, shapes: tuple, fans: tuple = ()) -> list:
    initializer = SCHEMES[name].make(scale)
    keys = jax.random.split(jax.random.fold_in(key, INIT_STREAM), max(len(shapes), 1))
    fans = fans or (None,) * len(shapes)  # a bias's weight's fan-in (``torch``), else None: the bias is 0
    return [initializer(k, shape, dtype) if len(shape) >= 2 else jnp.zeros(shape, dtype) if fan is None
            else _symmetric_uniform(1.0 / math.sqrt(fan))(k, shape, dtype)  # torch: b ~ U(±1/√fan_in)
            for k, (shape, dtype), fan in zip(keys, shapes, fans)]


def bias_fans(params: tuple) -> tuple:
    """Per leaf: for a bias (fewer than two axes), the fan-in of the weight in its module, else None."""
    paths = jax.tree_util.tree_flatten_with_path(params)[0]
    module = [tuple(k for k in path if not isinstance(k, jax.tree_util.GetAttrKey))[:-1] for path, _ in paths]
    weights = {m: fan_in(leaf.shape) for m, (_, leaf) in zip(module, paths) if leaf.ndim >= 2}
    return tuple(weights.get(m) if leaf.ndim < 2 else None for m, (_, leaf) in zip(module, paths))


def initialise(params: tuple, spec: str, seed: int) -> tuple:
    """Re-draw ``params`` (per-layer pytrees) with scheme ``spec``; biases become zero (``torch``: drawn)."""
    name, scale = parse_init(spec)
    if name == "default":
        return params
    leaves, treedef = jax.tree.flatten(params)
    shapes = tuple((tuple(leaf.shape), jnp.dtype(leaf.dtype)) for leaf in leaves)
    fans = bias_fans(params) if SCHEMES[name].biases else ()
    return jax.tree.unflatten(treedef, _draw(seed_key(seed), name, scale, shapes, fans))


#: XLA's backend optimisation level for a program that runs once per run (drawing the weights, the
#: rule's and optimiser's first state) on a CPU: it compiles 2.5-3.5× faster at level 1 than at the
#: default, with the same bits for the weights (tests/test_startup.py)
ONCE_OPTIONS = {"xla_backend_optimization_level": 1}


def once_options() -> dict | None:
    """``jax.jit``'s ``compiler_options`` for a program that runs once: ``ONCE_OPTIONS`` on a CPU."""
    return dict(ONCE_OPTIONS) if jax.default_backend() == "cpu" else None


def seed_key(seed: int) -> jax.Array:
    """The PRNG key of a run's ``seed``, every one of its 64 bits counted.

    ``jax.random.key(seed)`` with JAX's 32-bit integers keeps only the low 32 bits (seed
    2^32 would give the run of seed 0, 2^32 − 1 that of −1). A seed s (−2^63 ≤ s < 2^63) is
    taken as its two's complement u = s mod 2^64; the threefry key is u's two 32-bit
    words, high first: the key ``jax.random.key`` makes from a 64-bit seed with 64-bit
    integers enabled. One to one, and a seed in [0, 2^32) gets the key ``jax.random.key(seed)`` gives it.
    Under another key implementation (``rbg``) the high word is folded in.
    """
    high, low = divmod(int(seed) % (WORD * WORD), WORD)
    key = jax.random.key(low)  # [0, low] under threefry
    if high == 0:
        return key
    if jax.random.key_data(key).shape == (2,):  # threefry2x32: the key is the seed's 64 bits
        return jax.random.wrap_key_data(jnp.asarray([high, low], jnp.uint32), impl=jax.random.key_impl(key))
    return jax.random.fold_in(key, high)
