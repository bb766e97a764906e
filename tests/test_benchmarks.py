"""The benchmark suite's quick path on tiny random data, so its code does not rot (no timing asserted)."""

import json
import math

import pytest

from benchmarks import __main__ as bench
from benchmarks import common, memory, report


def test_rules_section_runs_on_tiny_data(tmp_path, capsys):
    out = tmp_path / "bench.json"
    result = bench.main(["--quick", "--sections", "rules", "--models", "mlp", "--data", "synthetic",
                         "--rules", "fa", "--mlp-examples", "128", "--epochs", "1", "--png", "", "--json", str(out)])
    assert [(r["comparison"], r["model"]) for r in result["ratios"]] == [("fa / bp (both ngf)", "mlp")]
    assert all(math.isfinite(r["ratio"]) and r["ratio"] > 0 for r in result["ratios"])
    assert json.loads(out.read_text())["pools"]["mlp"]["examples"] == 128
    printed = capsys.readouterr().out
    assert "| fa / bp (both ngf) | mlp |" in printed
    assert bench.main(["--render", str(out)])["ratios"] == json.loads(out.read_text())["ratios"]


def test_interleave_rotates_and_drops_the_warmup():
    calls = []
    times = common.interleave({"a": lambda i: calls.append(("a", i)), "b": lambda i: calls.append(("b", i))},
                              warmup=1, epochs=2, log=lambda _: None)
    assert calls == [("a", 0), ("b", 0), ("b", 1), ("a", 1), ("a", 2), ("b", 2)]
    assert {k: len(v) for k, v in times.items()} == {"a": 2, "b": 2}


def test_scaling_report_and_flop_count():
    assert common.resolve(common.Settings(quick=True), "cpu").epochs == 3
    from benchmarks import scaling
    assert scaling.weight_count((512, 512)) == 784 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10
    row = {"label": "width 8", "widths": [8, 8], "batch_size": 4, "examples": 8, "flops_analytic": 6e9,
           "flops_xla": None, "seconds": 1.0, "seconds_full_epoch": 2.0, "gflops_per_s": 6.0}
    text = report.scaling({"scaling": {"width": [row], "batch": [row]}})
    assert "| width 8 | 2.00 |" in text


def test_memory_probe_in_this_process():
    settings = common.Settings(data="synthetic", threads=1)
    found = memory.probe("jax:idle", settings, examples=16, epochs=1)
    assert found["peak_rss_mb"] > 0 and found["examples"] == 16


def test_unknown_section_is_refused():
    with pytest.raises(SystemExit):
        bench.parse(["--sections", "nope"])


def test_conv_methods_benchmark_runs(capsys):
    from benchmarks import conv_methods
    conv_methods.main(["--rounds", "1", "--calls", "1"])
    out = capsys.readouterr().out
    assert out.count("forward+grads") == 6 and "conv2 6→16" in out


def test_throughput_section_runs_on_a_tiny_subset(monkeypatch, tmp_path, capsys):
    """One ngf contender (workers and stacks together, the path with the most parts) and PyTorch, 2 runs of
    256 random examples; the full section has four ngf contenders and 8 mlp runs (docs/benchmarks.md)."""
    from benchmarks import throughput, torch_side
    monkeypatch.setattr(throughput, "RULES", {"mlp": ("bp",)})
    monkeypatch.setattr(throughput, "NGF", (("workers + stacked", "auto", "2"),))
    out = tmp_path / "bench.json"
    result = bench.main(["--sections", "throughput", "--models", "mlp", "--data", "synthetic", "--mlp-examples",
                         "256", "--threads", "1", "--png", "", "--json", str(out)])
    entry = result["throughput"]["mlp"]
    ngf = entry["contenders"]["ngf workers + stacked"]
    assert ngf["error"] is None and ngf["runs"] == 2 and ngf["stacked_runs"] == 2 and ngf["seconds"] > 0
    if torch_side.available():
        assert entry["contenders"]["torch"]["runs"] == 2 and entry["contenders"]["torch"]["threads"] == 1
        [row] = entry["ratios"]
        assert row["comparison"] == "ngf best / PyTorch back-to-back" and row["target"] == 0.5
    assert "Throughput: seconds to finish one comparison" in capsys.readouterr().out
    assert json.loads(out.read_text())["throughput"]["mlp"]["examples"] == 256


def test_throughput_ratios_skip_a_failed_contender():
    from benchmarks import throughput
    entry = {"runs": 8, "examples": 100, "contenders": {
        "ngf serial": {"label": "serial", "seconds": 20.0, "error": None},
        "ngf workers": {"label": "workers", "seconds": 5.0, "error": "exit 1: boom"},
        "ngf stacked": {"label": "stacked", "seconds": 10.0, "error": None, "runs": 8, "stacked_runs": 8},
        "torch": {"label": "torch", "seconds": 25.0, "error": None, "probe": {"1": 3.0, "2": 61.0},
                  "probe_stopped": ["2"]}}}
    entry["ratios"] = throughput.ratio_rows("mlp", entry)
    assert [(r["comparison"], r["ratio"], r["met"]) for r in entry["ratios"]] == [
        ("ngf best / PyTorch back-to-back", 0.4, True), ("ngf best / ngf serial", 0.5, True)]
    text = throughput.render({"load_before": 1.0, "mlp": entry, "load_after": 2.0}, report._table)
    assert "failed: exit 1: boom" in text and "8/8 runs in stacks" in text and "1 thread(s): 3.0s, 2 thread(s): > 61.0s" in text


def test_mnist_subset_plugin_is_the_first_examples():
    from ngf.host.registry import load_registry
    factory = load_registry(["benchmarks.throughput"]).get("dataset", "mnist-subset").factory
    data = factory(examples=100, source="synthetic")
    assert data.x_train.shape == (100, 28, 28, 1) and data.n_classes == 10
    assert (data.x_train == common.load_data("synthetic", 100).x).all()


def test_torch_lra_twin_computes_ngf_lra_updates():
    """The PyTorch lra twin's gradients are ngf lra's updates (its defaults) on one batch, to float precision."""
    torch = pytest.importorskip("torch")
    import inspect

    import jax
    import numpy as np
    from flax import nnx

    from benchmarks import torch_side
    from ngf.core.network import Network
    from ngf.host.registry import load_registry
    from ngf.plugins.lra import lra
    assert inspect.signature(lra).parameters["beta"].default == torch_side.LRA_BETA
    registry = load_registry()
    model = registry.get("model", "mlp").factory((28, 28, 1), 10, rngs=nnx.Rngs(0), widths=(32, 32))
    net, params = Network.from_model(model, (28, 28, 1))
    rule = registry.get("rule", "lra").factory()
    state = rule.init(jax.random.key(1), net, params)
    rng = np.random.default_rng(0)
    x, y = rng.random((8, 28, 28, 1)).astype(np.float32), rng.integers(0, 10, 8)
    _, trace = net.forward(params, jax.numpy.asarray(x))
    deltas, state = rule.compute_targets(net, params, trace, jax.numpy.asarray(y), state)
    updates, _ = rule.local_update(net, params, trace, deltas, state)
    twin = torch_side.models()["mlp"]("lra", 32)
    with torch.no_grad():
        for l, layer in enumerate(twin.layers):
            layer.map.weight.copy_(torch.tensor(np.asarray(params[l]["linear"]["kernel"][...]).T))
            layer.map.bias.copy_(torch.tensor(np.asarray(params[l]["linear"]["bias"][...])))
            if l:
                layer.feedback.copy_(torch.tensor(np.asarray(state.feedback[l]["linear"]["kernel"][...]).T))
    twin.objective(torch.tensor(x).permute(0, 3, 1, 2), torch.tensor(y).long()).backward()
    for l, layer in enumerate(twin.layers):
        ours = updates[l]["linear"]
        np.testing.assert_allclose(layer.map.weight.grad.numpy(), np.asarray(ours["kernel"][...]).T, atol=1e-6)
        np.testing.assert_allclose(layer.map.bias.grad.numpy(), np.asarray(ours["bias"][...]), atol=1e-6)


def test_throughput_torch_probe_takes_the_faster_thread_count(monkeypatch):
    """The first run is probed at 1 and 2 threads; a stopped probe loses, and the rest run at 1 thread."""
    from benchmarks import throughput
    calls = []

    def fake_timed(command, env, timeout=throughput.TIMEOUT):
        run = json.loads(command[-1])
        calls.append((run["rule"], run["seed"], run["threads"], timeout))
        if run["threads"] == 2:
            return timeout + 0.5, f"timed out after {timeout:.0f}s", ""
        return 5.0, None, json.dumps({"test_accuracy": 0.5}) + "\n"

    monkeypatch.setattr(throughput, "RULES", {"mlp": ("bp", "fa")})
    monkeypatch.setattr(throughput, "timed", fake_timed)
    found = throughput.time_torch("mlp", 64, common.Settings(threads=2), lambda _: None)
    assert calls[:2] == [("bp", 0, 1, throughput.TIMEOUT), ("bp", 0, 2, 60.0)]
    assert [c[2] for c in calls[2:]] == [1, 1, 1] and found["seconds"] == 20.0 and found["threads"] == 1
    assert found["probe_stopped"] == ["2"] and found["error"] is None
