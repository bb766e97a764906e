"""ngf compare, sweep, plot and norms, end to end on tiny data (and once on real MNIST)."""

import csv

import pytest

from conftest import real_data_available
from ngf.cli import main
from ngf.runs.configfile import read
from ngf.core.errors import NgfError
from ngf.host.registry import load_registry
from ngf.experiments.plan import parse_grid, rule_opts_for

TINY = ["--plugin", "ngf_tiny_data", "--batch-size", "32", "--model-opt", "widths=8", "--quiet"]
PNG = b"\x89PNG\r\n\x1a\n"


def _rows(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def _table_rows(markdown: str) -> list[str]:
    """The rows of the first table (the long one) in results.md."""
    table = markdown.split("\n\n")[3].splitlines()
    return table[2:]


def test_compare_writes_tables_curves_and_one_folder_per_run(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "--rules", "bp,lra", "--datasets", "tiny,tiny-b", "--seeds", "0,1", "--epochs", "1",
            "--out", str(out), *TINY]
    assert main(argv) == 0
    rows = _table_rows((out / "results.md").read_text())
    assert len(rows) == 4 and all(r.count("±") == 5 for r in rows)  # 2 rules × 2 datasets, 2 seeds each
    assert "| tiny-b | time to execute (s) |" in (out / "results.md").read_text()
    runs = _rows(out / "results.csv")
    assert len(runs) == 8 and {r["variant"] for r in runs} == {"bp", "lra"}
    assert all((out / r["folder"] / "summary.json").is_file() for r in runs)
    assert (out / "curves.png").read_bytes().startswith(PNG)
    capsys.readouterr()
    assert main(argv) == 0  # a second time: every run is read back, none trained again
    assert capsys.readouterr().out.count("finished earlier") == 8


def test_compare_refuses_a_folder_with_other_runs(tmp_path):
    base = ["compare", "--rules", "bp", "--datasets", "tiny", "--epochs", "1", "--out", str(tmp_path), *TINY]
    assert main(base) == 0
    assert main(base[:-1] + ["--lr", "0.5", "--quiet"]) == 2  # same folders, another config
    assert main(base + ["--lr", "0.5", "--overwrite"]) == 0


def test_sweep_over_run_options_and_rule_hyperparameters(tmp_path):
    out = tmp_path / "sw"
    assert main(["sweep", "--rule", "lra", "--dataset", "tiny", "--grid", "lr=1e-3,1e-2",
                 "--grid", "beta=0.5", "--grid", "init=default,zeros", "--epochs", "1",
                 "--out", str(out), *TINY]) == 0
    runs = _rows(out / "results.csv")
    assert len(runs) == 4
    assert runs[0]["variant"] == "lra lr=1e-3 beta=0.5 init=default"
    config = read(out / runs[-1]["folder"] / "config.toml")
    assert config["lr"] == 0.01 and config["rule_opts"]["beta"] == 0.5 and config["init"] == "zeros"
    assert len(_table_rows((out / "results.md").read_text())) == 4
    assert (out / "sensitivity-lr.png").read_bytes().startswith(PNG)  # lr is numeric: accuracy against it


def test_plot_and_norms_of_finished_runs(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--rules", "bp,fa", "--datasets", "tiny", "--epochs", "2", "--out", str(out),
                 "--model-opt", "activation=sigmoid", *TINY]) == 0
    assert main(["plot", str(out), str(out / "tiny" / "bp" / "seed0"), "--out", str(tmp_path / "c.png"),
                 "--plugin", "ngf_tiny_data"]) == 0
    assert (tmp_path / "c.png").read_bytes().startswith(PNG)
    assert main(["norms", str(out), "--out", str(tmp_path / "n.png"), "--batch", "64",
                 "--plugin", "ngf_tiny_data"]) == 0
    assert (tmp_path / "n.png").read_bytes().startswith(PNG)
    assert "bp · tiny · seed 0:" in capsys.readouterr().out
    assert main(["plot", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.png")]) == 2


def test_grid_and_rule_option_parsing():
    assert parse_grid(["model.widths=64,64;32", "lr=1e-3, 1e-2"]) == [
        ("model.widths", ["64,64", "32"]), ("lr", ["1e-3", "1e-2"])]
    with pytest.raises(NgfError, match="KEY=V1"):
        parse_grid(["lr"])
    registry = load_registry()
    opts = {"beta": "0.2", "bp.nothing": "1", "lra.gamma": "2"}
    assert rule_opts_for("lra", opts, registry, ["lra", "bp"]) == {"beta": "0.2", "gamma": "2"}
    assert rule_opts_for("bp", opts, registry, ["lra", "bp"]) == {"nothing": "1"}
    with pytest.raises(NgfError, match="none of the rules"):
        rule_opts_for("bp", {"zeta": "1"}, registry, ["bp", "fa"])


def test_unknown_grid_key_is_a_clean_error(tmp_path, capsys):
    assert main(["sweep", "--rule", "bp", "--dataset", "tiny", "--grid", "zeta=1,2", "--out",
                 str(tmp_path), *TINY]) == 2
    assert "not a run option, nor an option of rule 'bp'" in capsys.readouterr().out


@pytest.mark.skipif(not real_data_available("fashion-mnist"), reason="needs real MNIST and Fashion-MNIST")
def test_compare_on_real_data(tmp_path):
    out = tmp_path / "real"
    assert main(["compare", "--rules", "bp", "--datasets", "mnist,fashion-mnist", "--epochs", "1",
                 "--batch-size", "1000", "--model-opt", "widths=16", "--out", str(out), "--quiet"]) == 0
    runs = _rows(out / "results.csv")
    assert [r["dataset"] for r in runs] == ["mnist", "fashion-mnist"]
    assert all(0.5 < float(r["test_accuracy"]) <= 1 for r in runs)


def test_plot_labels_name_only_what_differs():
    from ngf.experiments.runs import auto_labels

    configs = [{"rule": "bp", "lr": 0.1, "seed": 0, "rule_opts": {}},
               {"rule": "lra", "lr": 0.1, "seed": 1, "rule_opts": {"beta": 0.1}},
               {"rule": "lra", "lr": 0.01, "seed": 0, "rule_opts": {"beta": 0.5}, "init": "he"}]
    assert auto_labels(configs) == ["bp lr=0.1", "lra lr=0.1 rule.beta=0.1", "lra lr=0.01 rule.beta=0.5"]


def test_curves_skip_a_run_that_diverged_in_its_first_epoch(tmp_path):
    from ngf.experiments.plots import curves
    from ngf.experiments.results import Result

    record = {"epoch": 1, "train_loss": 0.5, "test_loss": 0.6, "train_accuracy": 0.8, "test_accuracy": 0.7}
    results = [Result("bp", "tiny", 0, "a", {"history": [record]}),
               Result("bp", "tiny", 1, "b", {"history": []}),  # diverged in epoch 1: no epoch recorded
               Result("fa", "tiny", 0, "c", {"history": []})]
    assert curves(results, tmp_path / "curves.png").read_bytes().startswith(PNG)
