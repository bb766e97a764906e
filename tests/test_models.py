"""The cnn and resnet models: shapes, options, registration, pooling and the residual block's map."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ngf.core.errors import NgfError
from ngf.core.network import Network
from ngf.host.options import bind_options
from ngf.host.registry import load_registry
from ngf.models.cnn import LENET5, cnn
from ngf.models.conv import convolve, max_pool
from ngf.models.graph import GraphBuilder
from ngf.models.layers import Dense
from ngf.models.resnet import residual_block, resnet

MNIST = (28, 28, 1)


def abstract(factory, *args, **kwargs):
    """The model with shapes only (no initialisation runs), for checks of structure."""
    return nnx.eval_shape(lambda: factory(*args, rngs=nnx.Rngs(0), **kwargs))


def trace_of(model, shape=MNIST, batch=2):
    """The network, its parameters and the shapes of its trace on a batch."""
    net, params = Network.from_model(model, shape)
    return net, params, net.trace_shapes(params, batch)


def test_models_are_registered_by_their_plugins():
    registry = load_registry()
    assert registry.get("model", "cnn").plugin == "ngf.plugins.models"
    assert registry.get("model", "resnet").plugin == "ngf.plugins.resnet_plugin"
    assert not registry.problems


def test_cnn_default_layout():
    """conv3(16) → pool∘conv3(16→32), both SAME → pool∘dense 256 → 128 → 10, tanh."""
    _, params, trace = trace_of(abstract(cnn, MNIST, 10))
    assert [t.out.shape[1:] for t in trace] == [(28, 28, 16), (14, 14, 32), (256,), (128,), (10,)]
    assert all(layer.activation is jnp.tanh for layer in cnn(MNIST, 10, rngs=nnx.Rngs(0)).layers[:-1])


def test_cnn_lenet5_options_give_lenet5():
    """conv5(6) → pool∘conv5(16) → pool∘dense 120 → 84 → 10, with 61,706 parameters."""
    _, params, trace = trace_of(abstract(cnn, MNIST, 10, **LENET5))
    assert [t.inputs.shape[1:] for t in trace] == [(28, 28, 1), (28, 28, 6), (10, 10, 16), (120,), (84,)]
    assert [t.pre.shape[1:] for t in trace] == [(28, 28, 6), (10, 10, 16), (120,), (84,), (10,)]
    assert sum(a.size for a in jax.tree.leaves(params)) == 61706


@pytest.mark.parametrize("padding, sizes", [("same,valid", (28, 12, 4)), ("same", (28, 14, 7))])
def test_cnn_options_from_strings(padding, sizes):
    opts = bind_options("model", "cnn", cnn, {"channels": "4,8,8", "widths": "32", "kernel": "3",
                                              "activation": "tanh", "padding": padding})
    _, _, trace = trace_of(abstract(cnn, MNIST, 10, **opts))
    assert [t.out.shape[1:] for t in trace] == [(s, s, c) for s, c in zip(sizes, (4, 8, 8))] + [(32,), (10,)]


@pytest.mark.parametrize("name", sorted(load_registry().models))
def test_every_activation_keeps_its_shape(name):
    """f_l is elementwise in every registered model: pooling starts the next layer's map (docs/rules.md#notation)."""
    model = load_registry().get("model", name).factory(MNIST, 10, rngs=nnx.Rngs(0))
    _, _, trace = trace_of(model)
    assert all(t.pre.shape == t.out.shape for t in trace)


def test_cnn_rejects_unknown_padding():
    with pytest.raises(NgfError, match="same or valid"):
        abstract(cnn, MNIST, 10, padding="full")


def test_cnn_rejects_images_too_small():
    with pytest.raises(NgfError, match="too small"):
        abstract(cnn, (6, 6, 1), 3, **LENET5)


def test_cnn_accepts_images_without_channel_axis():
    net, params = Network.from_model(abstract(cnn, (12, 12), 3, kernel=3), (12, 12))
    assert jax.eval_shape(net.logits, params, jnp.zeros((2, 12, 12))).shape == (2, 3)


@pytest.mark.parametrize("head, last", [("flatten", (7, 7, 32)), ("global", (32,))])
def test_resnet_nodes_and_shortcuts(head, last):
    """stem (conv + pool) → [conv₁, conv₂, sum] → [conv₁, conv₂, projection, sum] → dense."""
    model = abstract(resnet, MNIST, 10, head=head)
    net, params, trace = trace_of(model)
    assert [type(layer).__name__ for layer in model.layers] == [
        "PooledConv", "Conv", "ScaledConv", "Add", "Conv", "ScaledConv", "Projection", "Add", "Dense"]
    assert net.reads == ((-1,), (0,), (1,), (2, 0), (3,), (4,), (3,), (5, 6), (7,))  # skips: 0 → 3, 3 → 6
    assert [t.pre.shape[1:] for t in trace] == [(14, 14, 16)] * 4 + [(7, 7, 32)] * 4 + [(10,)]
    assert not jax.tree.leaves(params[3]) and not jax.tree.leaves(params[7])  # sums have no weights
    assert params[6]["conv"]["kernel"].shape == (1, 1, 16, 32) and "bias" not in params[6]["conv"]
    assert params[-1]["linear"]["kernel"].shape == (math.prod(last), 10)


def test_resnet_blocks_option_applies_to_every_stage():
    opts = bind_options("model", "resnet", resnet, {"widths": "8,8,16", "blocks": "2"})
    model = abstract(resnet, MNIST, 10, **opts)
    _, _, trace = trace_of(model)
    assert len(model.layers) == 1 + 6 * 3 + 3 + 1  # stem, 3 nodes a block, 3 projections (16→8, two strides), head
    assert trace[-2].out.shape[1:] == (4, 4, 16)  # 14 → 7 → 4 with stride-2 SAME convolutions


def test_resnet_rejects_bad_options():
    with pytest.raises(NgfError, match="one per stage"):
        abstract(resnet, MNIST, 10, widths=(8, 16), blocks=(1, 2, 3))
    with pytest.raises(NgfError, match="valid heads"):
        abstract(resnet, MNIST, 10, head="attention")


@pytest.mark.parametrize("in_channels, out_channels, stride", [(3, 3, 1), (3, 5, 2)])
def test_residual_block_nodes_compute_skip_plus_branch(in_channels, out_channels, stride):
    """The block's nodes give f(skip(z) + α·conv₂(g(conv₁(z)))), and bp through them equals jax.grad."""
    g = GraphBuilder()
    z = residual_block(g, g.input, in_channels, out_channels, jax.nn.relu, stride=stride, branch_scale=0.5,
                       method="xla", rngs=nnx.Rngs(0))
    g.add(Dense(3 * 3 * out_channels if stride == 2 else 6 * 6 * out_channels, 2, rngs=nnx.Rngs(1)), z)
    model = g.build()
    net, params = Network.from_model(model, (6, 6, in_channels))
    conv1, conv2 = model.layers[0].conv, model.layers[1].conv
    skip = (lambda v: v) if stride == 1 else model.layers[2].conv
    assert (len(model.layers) == 5) == (stride != 1)
    x = jax.random.normal(jax.random.key(1), (2, 6, 6, in_channels))
    block_out = jax.nn.relu(skip(x) + 0.5 * conv2(jax.nn.relu(conv1(x))))
    _, trace = net.forward(params, x)
    np.testing.assert_allclose(trace[-2].out, block_out, rtol=1e-5, atol=1e-5)


def test_max_pool_matches_reduce_window():
    """reshape-and-max pools like lax.reduce_window, forward and backward, and crops odd edges."""
    x = jax.random.normal(jax.random.key(0), (2, 7, 9, 3))

    def window(v):
        return jax.lax.reduce_window(v, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")

    cotangent = jax.random.normal(jax.random.key(1), (2, 3, 4, 3))

    @functools.partial(jax.jit, static_argnums=0)
    def value_and_pullback(pool):
        out, pullback = jax.vjp(pool, x)
        return out, pullback(cotangent)[0]

    for ours, theirs in zip(value_and_pullback(max_pool), value_and_pullback(window)):
        np.testing.assert_allclose(ours, theirs)


@pytest.mark.parametrize("window", [2, 3])
def test_max_pool_derivatives_route_through_one_maximum(window):
    """The jvp gathers the tangent at each window's maximum, its transpose scatters there; a tie sends
    the whole cotangent to one position (JAX's rule for max would split it)."""
    x = jax.random.normal(jax.random.key(0), (2, 7, 8, 3))
    x = x.at[0, :window, :window, 0].set(1.5)  # one window, all tied
    rows, cols = 7 // window, 8 // window
    cotangent = jax.random.normal(jax.random.key(1), (2, rows, cols, 3))
    tangent = jax.random.normal(jax.random.key(2), x.shape)
    windows = x[:, :rows * window, :cols * window].reshape(2, rows, window, cols, window, 3)
    winner = windows == windows.max(axis=(2, 4), keepdims=True)
    winner = winner & (jnp.cumsum(winner.transpose(0, 1, 3, 5, 2, 4).reshape(2, rows, cols, 3, -1), -1)
                       .reshape(2, rows, cols, 3, window, window).transpose(0, 1, 4, 2, 5, 3) == 1)  # the first
    tangents = tangent[:, :rows * window, :cols * window].reshape(windows.shape)
    expected_jvp = jnp.sum(jnp.where(winner, tangents, 0), axis=(2, 4))
    expected_vjp = jnp.zeros_like(x).at[:, :rows * window, :cols * window].set(
        jnp.where(winner, cotangent[:, :, None, :, None], 0).reshape(2, rows * window, cols * window, 3))
    np.testing.assert_allclose(jax.jvp(lambda v: max_pool(v, window), (x,), (tangent,))[1], expected_jvp)
    np.testing.assert_allclose(jax.vjp(lambda v: max_pool(v, window), x)[1](cotangent)[0], expected_vjp)
    assert np.count_nonzero(expected_vjp[0, :window, :window, 0]) == 1

@pytest.mark.parametrize("method", ["patches", "shifts"])
@pytest.mark.parametrize("shape, kernel, stride, padding", [
    ((28, 28, 1), (5, 5, 1, 6), 1, "SAME"), ((14, 14, 6), (5, 5, 6, 16), 1, "VALID"),
    ((7, 9, 3), (3, 3, 3, 4), 2, "SAME"), ((8, 8, 4), (1, 1, 4, 5), 2, "SAME"), ((9, 9, 2), (3, 3, 2, 3), 2, "VALID")])
def test_conv_methods_compute_xlas_map_and_its_vjps(method, shape, kernel, stride, padding):
    """patches and shifts give lax.conv's output and the same vjps for the input and the kernel."""
    keys = jax.random.split(jax.random.key(0), 3)
    x, k = jax.random.normal(keys[0], (2,) + shape), jax.random.normal(keys[1], kernel)

    @functools.partial(jax.jit, static_argnums=0)
    def value_and_vjps(how):
        out, pullback = jax.vjp(lambda a, b: convolve(a, b, stride, padding, how), x, k)
        return (out,) + pullback(jax.random.normal(keys[2], out.shape))

    for ours, xla in zip(value_and_vjps(method), value_and_vjps("xla")):
        np.testing.assert_allclose(ours, xla, rtol=1e-4, atol=1e-4)


def test_conv_method_is_checked():
    with pytest.raises(NgfError, match="valid methods: xla, patches, shifts"):
        abstract(cnn, MNIST, 10, conv_method="fft")
