"""Colour images through every rule and both image models (issue 17): cnn and resnet on RGB.

bp, fa and lra train both models through ``ngf.run`` on a 32×32 RGB dataset read from
each of the three forms (``disk:``, ``folder:``, ``hf:`` from a faked Hub cache), in
rotation: the forms hold the same arrays (``tests/test_image_datasets.py`` checks
that), so each model meets every form once. Every other built-in rule trains both
models through the engine on 8×8 RGB images: one compile per (rule, model) pair.
"""

from __future__ import annotations

import math

import jax
import numpy as np
import optax
import pytest
from flax import nnx

import ngf
from ngf.core.engine import Engine, choose_steps_per_call
from ngf.core.network import Network
from ngf.host.registry import load_registry
from ngf.models.cnn import cnn
from ngf.models.resnet import RESNET20, resnet
from ngf_refusals import accepted
from rgb_forms import HUB_ID, rgb_splits, write_disk, write_hub_cache, write_tree

REGISTRY = load_registry()
FIRST = ["bp", "fa", "lra"]  # trained through ngf.run, from every form
BUILT_IN = {name for name, entry in REGISTRY.rules.items() if entry.plugin.startswith("ngf.plugins.")}
#: the other rules whose own arrays take their shapes from the images or the feature maps: PEPITA's F
#: (input-sized), dfa's D and dkp's B (where each node's output is read), local heads (local-loss, fg),
#: and ep's states; every rule's contract on cnn and resnet is ngf.testing's (tests/test_contract.py)
OTHERS = ["dfa", "dkp", "ep", "fg", "local-loss", "pepita"]
MODELS = {"cnn": {"channels": (2,), "widths": ()}, "resnet": {"stem": 2, "widths": (2,), "blocks": (1,)}}
FACTORIES = {"cnn": cnn, "resnet": resnet}
FORMS = ("disk", "folder", "hf")
CASES = [(rule, model, FORMS[(r + m) % 3]) for r, rule in enumerate(FIRST) for m, model in enumerate(MODELS)]


@pytest.fixture(scope="module")
def forms(tmp_path_factory):
    """The same 32×32×3 dataset as a save_to_disk folder, a PNG tree and a datasets cache."""
    root = tmp_path_factory.mktemp("rgb-forms")
    data = rgb_splits()
    return {"disk": f"disk:{write_disk(root / 'disk', data)}", "folder": f"folder:{write_tree(root / 'tree', data)}",
            "hf": f"hf:{HUB_ID}", "cache": write_hub_cache(root / 'hf-cache', data)}


@pytest.fixture
def offline_hub(forms, monkeypatch):
    """``datasets`` reads the faked cache; the Hub counts as unreachable (no network in tests)."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(forms["cache"]))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_the_rotation_trains_both_models_on_every_form():
    for form in FORMS:
        assert {model for _, model, f in CASES if f == form} == set(MODELS)
    assert {(rule, model) for rule, model, _ in CASES} == {(rule, model) for rule in FIRST for model in MODELS}


@pytest.mark.parametrize("rule,model,form", CASES, ids=[f"{r}-{m}-{f}" for r, m, f in CASES])
def test_bp_fa_and_lra_train_cnn_and_resnet_from_each_rgb_form(rule, model, form, forms, offline_hub):
    summary = ngf.run(rule=rule, model=model, model_opts=MODELS[model], dataset=forms[form], epochs=1,
                      batch_size=16, lr=1e-2, registry=REGISTRY)
    assert summary["status"] == "completed" and summary["dataset"] == forms[form]
    assert math.isfinite(summary["train_loss"]) and 0 <= summary["test_accuracy"] <= 1


@pytest.mark.parametrize("rule, model", accepted([(r, m) for r in OTHERS for m in sorted(MODELS)]))
def test_every_other_rule_trains_cnn_and_resnet_on_rgb(rule, model):
    data = rgb_splits(n_train=16, n_test=8, size=8)
    built = FACTORIES[model](data.input_shape, data.n_classes, rngs=nnx.Rngs(0), **MODELS[model])
    net, params = Network.from_model(built, data.input_shape)
    engine = Engine(net, REGISTRY.get("rule", rule).factory(), optax.adam(1e-2), 8, len(data.x_train),
                    choose_steps_per_call(built, 2))
    state = engine.init(jax.random.key(1), params)
    before = [np.array(leaf) for leaf in jax.tree.leaves(state.params)]
    state, metrics = engine.train_epoch(state, data.x_train, data.y_train, jax.random.key(0))
    after = [np.asarray(leaf) for leaf in jax.tree.leaves(state.params)]
    assert np.isfinite(metrics["train_loss"]) and all(np.all(np.isfinite(a)) for a in after)
    assert any(not np.allclose(a, b) for a, b in zip(after, before)), "nothing was learned"


def _weighted_nodes(model) -> list[str]:
    return [type(layer).__name__ for layer in model.layers if jax.tree.leaves(nnx.state(layer, nnx.Param))]


def test_resnet20_is_he_et_als_cifar_layout_on_32x32x3():
    model = nnx.eval_shape(lambda: resnet((32, 32, 3), 10, rngs=nnx.Rngs(0), **RESNET20))  # shapes only
    net, params = Network.from_model(model, (32, 32, 3))
    trace = net.trace_shapes(params, batch=2)
    weighted = _weighted_nodes(model)
    assert weighted.count("Projection") == 2  # where 16 → 32 and 32 → 64 channels
    assert len(weighted) - 2 == 20  # 6n + 2 with n = 3: the stem, 18 block convolutions, the dense layer
    assert len(model.layers) == 1 + 3 * 3 * 3 + 2 + 1  # + a sum node per block
    assert trace[0].out.shape == (2, 32, 32, 16)  # no pooling after the stem
    stage_shapes = {tuple(t.out.shape[1:]) for t in trace[1:-1]}
    assert {(32, 32, 16), (16, 16, 32), (8, 8, 64)} <= stage_shapes
    assert trace[-1].pre.shape == (2, 10)


@pytest.mark.parametrize("factory", [cnn, resnet])
def test_default_models_take_32x32x3(factory):
    model = nnx.eval_shape(lambda: factory((32, 32, 3), 10, rngs=nnx.Rngs(0)))
    net, params = Network.from_model(model, (32, 32, 3))
    assert params[0]  # the first node holds the colour kernel
    kernel = next(leaf for leaf in jax.tree.leaves(params[0]) if len(leaf.shape) == 4)
    assert kernel.shape[2] == 3  # HWIO: three input channels
    assert net.trace_shapes(params, batch=2)[-1].pre.shape == (2, 10)
