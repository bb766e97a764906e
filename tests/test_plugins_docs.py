"""docs/plugins.md documents every hook, and its worked rule example works."""

import inspect
import json
import re
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import ngf
import ngf.core.engine
from conftest import ROOT, make_tiny
from ngf.host import hookspecs
from ngf.models import Dense, Sequential

DOC = (ROOT / "docs" / "plugins.md").read_text()


def hook_signatures() -> dict[str, str]:
    """Every hook in hookspecs.py, as ``name(arg, ...)``."""
    return {name: f"{name}({', '.join(inspect.signature(fn).parameters)})"
            for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("ngf_")}


@pytest.mark.parametrize("name", sorted(hook_signatures()))
def test_every_hook_is_documented_with_its_arguments(name):
    assert f"\n### {hook_signatures()[name]}\n" in DOC, f"docs/plugins.md lacks a section for {name}"


def test_every_documented_hook_exists():
    assert set(re.findall(r"^### (ngf_\w+)\(", DOC, re.M)) == set(hook_signatures())


def python_block(containing: str) -> str:
    return next(b for b in re.findall(r"```python\n(.*?)\n```", DOC, re.S) if containing in b)


def test_worked_rule_example_registers_and_computes():
    module = types.ModuleType("docs_random_sign")
    exec(compile(python_block("def random_sign"), "docs/plugins.md", "exec"), module.__dict__)
    registry = ngf.load_registry(extra_plugins=[module], autoload=False)
    rule = registry.get("rule", "random-sign").build(ngf.LearningRule, scale=0.5)
    model = Sequential([Dense(4, 3, jnp.tanh, rngs=nnx.Rngs(0)), Dense(3, 2, rngs=nnx.Rngs(1))])
    net, params = ngf.Network.from_model(model, (4,))
    _, trace = net.forward(params, jnp.ones((5, 4)))
    labels = jnp.zeros(5, jnp.int32)
    state = rule.init(jax.random.key(0), net, params)
    first, state = rule.compute_targets(net, params, trace, labels, state)
    second, state = rule.compute_targets(net, params, trace, labels, state)
    assert not np.allclose(first[0], second[0])  # magnitudes redrawn at every step
    updates, _ = rule.local_update(net, params, trace, second, state)
    assert jax.tree.structure(updates) == jax.tree.structure(params)


def test_worked_apply_changes_example_gives_b_the_applied_change(tiny_data):
    """The Kolen–Pollack example, run by the engine under Adam: B − W shrinks by (1 − λ) per step."""
    module = types.ModuleType("docs_my_kp")
    exec(compile(python_block("def my_kp"), "docs/plugins.md", "exec"), module.__dict__)
    registry = ngf.load_registry(extra_plugins=[module], autoload=False)
    rule = registry.get("rule", "my-kp").build(ngf.LearningRule, decay=0.1)
    model = Sequential([Dense(36, 5, jnp.tanh, rngs=nnx.Rngs(0)), Dense(5, 3, rngs=nnx.Rngs(1))])
    net, params = ngf.Network.from_model(model, (6, 6, 1))
    engine = ngf.core.engine.Engine(net, rule, optax.adam(1e-2), 16, len(tiny_data.x_train), 1)
    state = engine.init(jax.random.key(0), params)
    gap = np.array(state.rule_state[1]["linear"]["kernel"] - state.params[1]["linear"]["kernel"])
    state, _ = engine.train_epoch(state, jnp.asarray(tiny_data.x_train), jnp.asarray(tiny_data.y_train),
                                  jax.random.key(1))
    np.testing.assert_allclose(state.rule_state[1]["linear"]["kernel"] - state.params[1]["linear"]["kernel"],
                               0.9 ** engine.n_steps * gap, rtol=1e-4, atol=1e-7)


def test_worked_graph_example_trains_like_jax_grad():
    """The residual example builds a graph whose bp updates equal jax.grad of the whole loss."""
    namespace = {}
    exec(compile(python_block("def tiny_resnet"), "docs/plugins.md", "exec"), namespace)
    model = namespace["tiny_resnet"]((6, 6, 1), 3, rngs=nnx.Rngs(0), channels=4)
    net, params = ngf.Network.from_model(model, (6, 6, 1))
    assert net.reads == ((-1,), (0,), (1,), (2, 0), (3,))
    x, labels = jax.random.uniform(jax.random.key(0), (5, 6, 6, 1)), jnp.arange(5) % 3
    _, trace = net.forward(params, x)
    rule = ngf.load_registry().get("rule", "bp").factory()
    deltas, _ = rule.compute_targets(net, params, trace, labels, ())
    updates, _ = rule.local_update(net, params, trace, deltas, ())
    grads = jax.grad(lambda p: jnp.mean(ngf.cross_entropy(net.logits(p, x), labels)))(params)
    for ours, exact in zip(jax.tree.leaves(updates), jax.tree.leaves(grads)):
        np.testing.assert_allclose(ours, exact, rtol=1e-5, atol=1e-6)


def test_the_logger_example_leaves_no_folder_behind_a_run_failing_before_its_first_epoch(tmp_path):
    """The JSON-lines logger opens its file at the first epoch's end: a run that fails before it
    (its rule's updates refused while the first step compiles) leaves no folder, and the same
    command runs again."""
    module = types.ModuleType("my_jsonl_logger")
    exec(compile(python_block("my_jsonl_logger.py"), "docs/plugins.md", "exec"), module.__dict__)
    registry = ngf.load_registry(extra_plugins=[module], autoload=False)
    bp = registry.get("rule", "bp").factory()._replace(name="bp")
    broken = bp._replace(local_update=lambda net, params, trace, deltas, state: (params[:-1], state))
    out = tmp_path / "run"
    options = {"dataset": make_tiny(), "epochs": 1, "batch_size": 32, "model_opts": {"widths": (8,)},
               "out": str(out), "registry": registry}
    with pytest.raises(ngf.NgfError, match="rule 'bp': local_update returned"):
        ngf.run(rule=broken, **options)
    assert not out.exists()
    ngf.run(rule=bp, **options)  # the retry is accepted
    assert (out / "bp-seed0.jsonl").is_file() and module.OPEN == {}


def bands(n_train=512, n_test=128, classes=4, seed=0) -> ngf.DataSplits:
    """8×8 noise images whose class c lights rows 2c and 2c + 1: learnable within an epoch."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n_train + n_test).astype(np.int32)
    x = rng.integers(0, 80, (n_train + n_test, 8, 8, 1))
    for c in range(classes):
        x[y == c, 2 * c:2 * c + 2] += 175
    x = x.astype(np.uint8)
    return ngf.DataSplits(x[:n_train], y[:n_train], x[n_train:], y[n_train:], classes)


def test_worked_owned_parameters_example_learns_and_reports_its_metric(tmp_path):
    """The direct Kolen–Pollack example, a plugin module run by ``ngf.run``: well above chance (1/4),
    ``b_norm`` in every record, and its B_l learn (their norm moves)."""
    module = types.ModuleType("my_dkp")
    exec(compile(python_block("def dkp"), "docs/plugins.md", "exec"), module.__dict__)
    registry = ngf.load_registry(extra_plugins=[module], autoload=False)
    summary = ngf.run(rule="dkp-example", dataset=bands(), epochs=2, batch_size=16, lr=1e-2,
                      model_opts={"widths": (16,)}, registry=registry, out=str(tmp_path / "run"))
    first, last = summary["history"]
    assert last["test_accuracy"] > 0.9, summary["history"]
    assert set(first["rule_metrics"]) == set(last["rule_metrics"]) == {"b_norm"}
    assert 0 < first["rule_metrics"]["b_norm"] != last["rule_metrics"]["b_norm"]
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["rule_metrics"] for line in lines] == [first["rule_metrics"], last["rule_metrics"]]


def test_ci_installs_the_example_plugin():
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"<!-- test-command -->\n```bash\n(.*?)\n```", readme, re.S).group(1)
    assert "\n" not in command and "-e examples/ngf-signsym" in command
    assert (ROOT / "examples" / "ngf-signsym" / "pyproject.toml").is_file()
