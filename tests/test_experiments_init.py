"""Initialisation schemes: every model, weights drawn by the scheme, biases zero."""

import jax
import numpy as np
import pytest
from flax import nnx

from ngf.core.errors import NgfError
from ngf.core.init import initialise, parse_init
from ngf.core.network import Network
from ngf.models.cnn import cnn
from ngf.models.mlp import mlp


def _params(model):
    return Network.from_model(model, (28, 28, 1))[1]


@pytest.fixture(scope="module")
def mlp_params():
    return _params(mlp((28, 28, 1), 10, rngs=nnx.Rngs(0), widths=(100, 50)))


def test_default_keeps_the_layers_own_draw(mlp_params):
    assert initialise(mlp_params, "default", 0) is mlp_params


@pytest.mark.parametrize("spec, std", [("normal:0.1", 0.1), ("uniform:0.3", 0.3 / np.sqrt(3)),
                                       ("he", np.sqrt(2 / 784)), ("glorot", np.sqrt(2 / (784 + 100))),
                                       ("lecun:2", 2 / np.sqrt(784))])
def test_weights_follow_the_scheme_and_biases_are_zero(mlp_params, spec, std):
    params = initialise(mlp_params, spec, 0)
    first = params[0]["linear"]["kernel"][...]
    assert first.shape == (784, 100) and abs(float(first.std()) / std - 1) < 0.05
    assert all(float(abs(leaf).max()) == 0 for leaf in jax.tree.leaves(params) if leaf.ndim == 1)


def test_orthogonal_and_zeros(mlp_params):
    w = np.asarray(initialise(mlp_params, "orthogonal", 0)[1]["linear"]["kernel"][...])  # 100 × 50
    np.testing.assert_allclose(w.T @ w, np.eye(50), atol=1e-4)
    assert all(float(abs(leaf).max()) == 0 for leaf in jax.tree.leaves(initialise(mlp_params, "zeros", 0)))


def test_schemes_work_on_convolutions():
    model = cnn((12, 12, 1), 3, rngs=nnx.Rngs(0), channels=(2, 3), widths=(4,), kernel=3)
    params = Network.from_model(model, (12, 12, 1))[1]
    for name in ("orthogonal", "he"):
        fresh = initialise(params, name, 1)
        assert jax.tree.map(np.shape, fresh) == jax.tree.map(np.shape, params)


def test_seed_decides_the_draw(mlp_params):
    a, b, c = (initialise(mlp_params, "he", s)[0]["linear"]["kernel"][...] for s in (0, 0, 1))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("spec, message", [("xavier", "unknown init 'xavier'"), ("zeros:1", "takes no scale"),
                                           ("normal:big", "expects a number"), ("normal:-1", "positive")])
def test_bad_specs(spec, message):
    with pytest.raises(NgfError, match=message):
        parse_init(spec)
