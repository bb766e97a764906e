"""The `ngf` command: listings, a real run's files, and one-line errors with status 2."""

import json
import subprocess
import sys

import pytest

from conftest import real_data_available
from ngf.cli import main

SUMMARY_KEYS = {"rule", "model", "dataset", "epochs", "seed", "train_accuracy", "test_accuracy",
                "train_loss", "test_loss", "epoch_seconds", "wall_seconds", "config"}


def test_rules_lists_hyperparameters(capsys):
    assert main(["rules"]) == 0
    out = capsys.readouterr().out
    for text in ("bp", "lra", "ngf.plugins.lra", "beta=0.1", "learn_e=False"):
        assert text in out


def test_models_and_datasets_list(capsys):
    assert main(["models"]) == 0
    assert "widths=(" in capsys.readouterr().out
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "mnist" in out and "fashion-mnist" in out


@pytest.mark.parametrize("argv, message", [
    (["run", "--rule", "nope"], "unknown rule 'nope'; valid rules: "),
    (["run", "--model", "nope"], "unknown model 'nope'; valid models: "),
    (["run", "--dataset", "nope"], "unknown dataset 'nope'; valid datasets: "),
    (["run", "--optimizer", "nope"], "unknown optimizer 'nope'; valid optimizers: adam"),
    (["run", "--rule-opt", "gamma"], "--rule-opt expects NAME=VALUE"),
    (["run", "--rule-opt", "zeta=1"], "unknown option 'zeta' for rule 'lra'; valid options: beta"),
    (["run", "--rule-opt", "beta=big"], "rule option beta expects a number, got 'big'"),
    (["run", "--model-opt", "activation=nope"], "unknown activation 'nope'"),
    (["run", "--epochs", "0"], "epochs must be a positive integer"),
    (["run", "--batch-size", "100000"], "batch-size 100000 is larger than the 60000 training examples"),
])
def test_bad_input_is_one_line_and_status_2(argv, message, capsys):
    if "--dataset" not in argv and not real_data_available():
        pytest.skip("needs real MNIST")
    assert main(argv + ["--quiet"]) == 2
    out = capsys.readouterr().out.strip()
    assert message in out and len(out.splitlines()) == 1 and "Traceback" not in out


def test_unknown_rule_lists_every_valid_one(capsys):
    main(["run", "--rule", "nope"])
    out = capsys.readouterr().out
    from ngf.host.registry import load_registry

    assert all(name in out for name in load_registry().rules)


def test_missing_data_is_a_clean_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NGF_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("ngf.data.sources.SYSTEM_DIR", tmp_path / "system")
    assert main(["run", "--rule", "bp", "--out", str(tmp_path / "out")]) == 2
    assert "NGF_DATA_DIR" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()  # nothing left that looks like a result


@pytest.mark.skipif(not real_data_available(), reason="needs real MNIST")
def test_run_writes_metrics_and_summary(tmp_path):
    out = tmp_path / "run"
    argv = ["run", "--rule", "lra", "--epochs", "2", "--batch-size", "600", "--model-opt", "widths=32",
            "--rule-opt", "beta=0.2", "--seed", "3", "--out", str(out), "--quiet"]
    proc = subprocess.run([sys.executable, "-m", "ngf.cli", *argv], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary)
    assert summary["rule"] == "lra" and summary["epochs"] == 2 and summary["seed"] == 3
    assert 0.5 < summary["test_accuracy"] <= 1 and 0 <= summary["train_accuracy"] <= 1
    assert len(summary["epoch_seconds"]) == 2
    assert summary["config"]["rule_opts"] == {"beta": "0.2"}
    lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [l["epoch"] for l in lines] == [1, 2]
    assert lines[-1]["test_accuracy"] == summary["test_accuracy"]
    # a second run into the same folder must not overwrite it
    again = subprocess.run([sys.executable, "-m", "ngf.cli", *argv], capture_output=True, text=True)
    assert again.returncode == 2 and "--overwrite" in again.stdout and "Traceback" not in again.stderr
