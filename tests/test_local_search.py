"""local-search: the best candidate by hand, never a worse step, sparse and layer-wise subsets, σ schedules."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from ngf.core.errors import NgfError
from ngf.core.network import cross_entropy
from ngf.plugins.local_search import draw_subsets, local_search
from ngf_tiny_mlp import batch, numpy_forward, output_error, tiny_network

K, FRACTION, SIGMA = 6, 0.2, 0.3


def numpy_loss(params, x, y) -> float:
    logits = numpy_forward(params, x)[1][-1]
    p = output_error(logits, y) + np.eye(logits.shape[1])[np.asarray(y)]  # softmax
    return float(-np.mean(np.log(p[np.arange(len(y)), np.asarray(y)])))


STEPS = {}  # a rule's jitted step, by the rule object: compiled once for its repeated steps


def search_step(rule, net, params, x, y, state):
    """One step of ``rule``, jitted (one compilation per rule, instead of one per eager operation)."""
    if id(rule) not in STEPS:
        def step(params, state, x, y):
            _, trace = net.forward(params, x)
            change, state = rule.compute_targets(net, params, trace, y, state)
            return rule.local_update(net, params, trace, change, state)

        STEPS[id(rule)] = (rule, jax.jit(step))  # the rule kept alive, so that its id is not reused
    return STEPS[id(rule)][1](params, state, x, y)


def test_the_update_is_the_best_candidate_by_hand():
    net, params = tiny_network()
    x, y = batch()
    rule = local_search(candidates=K, fraction=FRACTION, sigma=SIGMA, mode="coordinates")
    state = rule.init(jax.random.key(4), net, params)
    change, _ = search_step(rule, net, params, x, y, state)
    # redraw the same candidates from the same key, and score each in numpy
    flat, unravel = ravel_pytree(params)
    _, k_index, k_noise = jax.random.split(state.key, 3)
    count = round(FRACTION * flat.size)
    index, mask = draw_subsets(k_index, [(0, flat.size, count)], 0, K)
    steps = SIGMA * np.asarray(mask) * np.asarray(jax.random.normal(k_noise, index.shape))
    candidates = []
    for i, s in zip(np.asarray(index), steps):
        delta = np.zeros(flat.size, np.float32)
        np.add.at(delta, i, s)
        candidates.append(delta)
    losses = [numpy_loss(unravel(flat + d), x, y) for d in candidates]
    current = numpy_loss(params, x, y)
    best = int(np.argmin(losses))
    expected = candidates[best] if losses[best] < current else np.zeros(flat.size)
    np.testing.assert_allclose(ravel_pytree(change)[0], expected, atol=1e-6)
    assert np.count_nonzero(ravel_pytree(change)[0]) <= count


@pytest.mark.parametrize("sigma", [0.05, 3.0])
def test_never_accepts_a_higher_batch_loss(sigma):
    net, params = tiny_network(widths=(4, 3))
    x = jax.random.normal(jax.random.key(1), (16, 3))
    y = jax.random.randint(jax.random.key(2), (16,), 0, 2)
    rule = local_search(candidates=4, fraction=0.3, sigma=sigma)
    loss = lambda p: jnp.mean(cross_entropy(net.logits(p, x), y))

    @jax.jit
    def step(carry, _):
        p, st = carry
        change, st = search_step(rule, net, p, x, y, st)
        moved = jax.tree.map(jnp.add, p, change)
        return (moved, st), (loss(p), loss(moved), jnp.max(jnp.abs(ravel_pytree(change)[0])))

    state = rule.init(jax.random.key(0), net, params)
    (_, state), (before, after, size) = jax.lax.scan(step, (params, state), None, length=40)
    before, after, size = map(np.asarray, (before, after, size))
    assert np.all(after <= before + 1e-6)
    assert np.all(size[after == before] == 0)  # a rejected step changes nothing
    assert 0 < int(state.accepted) <= 40 and int(state.step) == 40
    if sigma > 1:
        assert int(state.accepted) < 40  # big steps fail sometimes: the check has teeth


def test_layer_mode_cycles_through_layers():
    net, params = tiny_network(widths=(4, 3))
    x, y = batch()
    rule = local_search(candidates=16, fraction=0.5, sigma=0.2, mode="layer")
    state = rule.init(jax.random.key(0), net, params)
    for step in range(net.depth):
        change, state = search_step(rule, net, params, x, y, state)
        for l, theta in enumerate(change):
            if l != step:
                assert all(np.all(leaf == 0) for leaf in jax.tree.leaves(theta))


def test_adaptive_sigma_shrinks_when_candidates_fail_and_fixed_stays():
    net, params = tiny_network()
    x, y = batch()
    for schedule, check in (("adaptive", lambda s: s < 5.0), ("fixed", lambda s: s == 5.0)):
        rule = local_search(candidates=4, sigma=5.0, schedule=schedule, adapt_rate=0.5)
        state = rule.init(jax.random.key(0), net, params)
        for _ in range(3):
            _, state = search_step(rule, net, params, x, y, state)
        assert check(float(state.sigma))


def test_rule_applies_directly_and_rejects_bad_options():
    assert local_search().applies_directly
    for bad in ({"mode": "random"}, {"schedule": "cosine"}, {"fraction": 0.0}, {"candidates": 0}):
        with pytest.raises(NgfError):
            local_search(**bad)
