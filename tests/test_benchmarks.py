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
