"""``ngf compare`` / ``ngf sweep --config FILE``: the experiment in the file's ``[plan]`` table."""

import json
from pathlib import Path

import pytest

from ngf.cli import main
from ngf.core.errors import NgfError
from ngf.experiments.planfile import merged_grid, read_plan

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--plugin", "ngf_tiny_data", "--quiet"]
FILE = """
model = "mlp"
epochs = 1
batch_size = 32
[model_opts]
widths = [8]
[plan]
rules = ["bp", "fa"]
datasets = ["tiny"]
seeds = [0, 1]
[plan.grid]
lr = [1e-3, 1e-2]
"""


def _summaries(out):
    return sorted((s["rule"], s["seed"], s["config"]["lr"])
                  for s in (json.loads(p.read_text()) for p in out.rglob("summary.json")))


def test_compare_runs_the_plan_of_its_config_file(tmp_path):
    config = tmp_path / "setup.toml"
    config.write_text(FILE)
    out = tmp_path / "cmp"
    assert main(["compare", "--config", str(config), "--out", str(out), *TINY]) == 0
    assert _summaries(out) == sorted((r, s, lr) for r in ("bp", "fa") for s in (0, 1) for lr in (1e-3, 1e-2))
    assert "lr=0.001" in (out / "results.md").read_text()


def test_the_command_line_wins_over_the_plan(tmp_path):
    config = tmp_path / "setup.toml"
    config.write_text(FILE)
    out = tmp_path / "sweep"
    assert main(["sweep", "--config", str(config), "--rules", "bp", "--seeds", "3", "--grid", "lr=0.05",
                 "--out", str(out), *TINY]) == 0
    assert _summaries(out) == [("bp", 3, 0.05)]


def test_ngf_run_reads_the_options_and_ignores_the_plan(tmp_path):
    config = tmp_path / "setup.toml"
    config.write_text(FILE)
    assert main(["run", "--config", str(config), "--rule", "fa", "--dataset", "tiny", "--out",
                 str(tmp_path / "one"), *TINY]) == 0
    summary = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert (summary["rule"], summary["config"]["model_opts"]["widths"]) == ("fa", [8])


@pytest.mark.parametrize("plan, message", [
    ("rules = 'bp'", "rules must be a non-empty list"),
    ("seeds = [0, 0]", "seeds must be a non-empty list of integers, each once"),
    ("colour = 1", "unknown key 'colour'"),
    ("[plan.grid]\nlr = []", "grid lr must be a non-empty list"),
])
def test_a_bad_plan_is_one_line(tmp_path, plan, message):
    config = tmp_path / "bad.toml"
    config.write_text("[plan]\n" + plan + "\n")
    with pytest.raises(NgfError, match=message):
        read_plan(config)


def test_compare_without_rules_anywhere_and_sweep_without_grid_exit_2(tmp_path, capsys):
    assert main(["compare", "--out", str(tmp_path / "a"), *TINY]) == 2
    assert "needs --rules" in capsys.readouterr().out
    assert main(["sweep", "--out", str(tmp_path / "b"), *TINY]) == 2
    assert "needs --grid" in capsys.readouterr().out


def test_grid_values_are_grid_text_and_the_command_line_replaces_a_key():
    assert merged_grid([("lr", ["0.1"]), ("model.widths", ["800", "800,800"])], [("lr", ["0.2"])]) == [
        ("model.widths", ["800", "800,800"]), ("lr", ["0.2"])]


def test_by_rule_sets_run_options_for_one_rule_only(tmp_path):
    config = tmp_path / "setup.toml"
    config.write_text(FILE.replace("[plan.grid]\nlr = [1e-3, 1e-2]\n", "[plan.by_rule.fa]\nlr = 0.05\n"))
    out = tmp_path / "cmp"
    assert main(["compare", "--config", str(config), "--seeds", "0", "--out", str(out), *TINY]) == 0
    assert _summaries(out) == [("bp", 0, 0.001), ("fa", 0, 0.05)]
    typed = tmp_path / "typed"  # an option typed on the command line wins over by_rule too
    assert main(["compare", "--config", str(config), "--seeds", "0", "--lr", "0.02", "--out", str(typed), *TINY]) == 0
    assert _summaries(typed) == [("bp", 0, 0.02), ("fa", 0, 0.02)]


@pytest.mark.parametrize("table, message", [
    ("rules = ['bp']\n[plan.by_rule.fa]\nlr = 0.1", "by_rule.fa names a rule that is not in the plan"),
    ("[plan.by_rule.fa]\nseed = 3", "seed is set by the experiment"),
    ("[plan.by_rule.fa]\nlearning_rate = 3", "unknown option 'learning_rate'"),
])
def test_a_bad_by_rule_table_is_one_line(tmp_path, table, message):
    config = tmp_path / "bad.toml"
    config.write_text("[plan]\n" + table + "\n")
    with pytest.raises(NgfError, match=message):
        read_plan(config)


@pytest.mark.parametrize("path", sorted((ROOT / "docs" / "reproductions").glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_reproduction_plans_and_passes_the_checks(path):
    """Each file of docs/reproductions: its options, plan, rules and models are valid, before any training."""
    from ngf.experiments.plan import plan
    from ngf.experiments.precheck import check_plan
    from ngf.host.registry import load_registry
    from ngf.runs.config import RunConfig
    from ngf.runs.configfile import read

    planned = read_plan(path)
    assert planned["rules"] and planned["datasets"]
    registry = load_registry([], [])
    runs = plan(RunConfig(**read(path)), planned["rules"], planned["datasets"], planned.get("seeds", [0]),
                planned["grid"], Path("/nonexistent"), registry, planned["by_rule"])
    check_plan(runs, registry)
    for item in runs:  # a rule's own run options reach its runs alone
        assert all(getattr(item.config, k) == v for k, v in planned["by_rule"].get(item.config.rule, {}).items())
