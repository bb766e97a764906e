"""The rule zoo (issue 14): each new rule is listed with documented hyperparameters and runs through
``ngf run``, ``ngf compare`` and ``ngf sweep``."""

import csv
import inspect
import json

import pytest

from ngf.cli import main
from ngf.host.registry import load_registry

ZOO = ("kp", "drtp", "pepita", "pc", "ddtp")
TINY = ["--plugin", "ngf_tiny_data", "--batch-size", "32", "--model-opt", "widths=8", "--quiet"]
REGISTRY = load_registry()


def hyperparameters(rule: str) -> dict:
    """The factory's keyword arguments and their defaults."""
    return {n: p.default for n, p in inspect.signature(REGISTRY.get("rule", rule).factory).parameters.items()}


@pytest.mark.parametrize("rule", ZOO)
def test_listed_with_every_hyperparameter_documented(rule, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # one line per option
    doc = inspect.getdoc(REGISTRY.get("rule", rule).factory)
    args = doc.split("Args:")[1]
    for name in hyperparameters(rule):
        assert f"\n{name}: " in "\n" + inspect.cleandoc(args), f"{rule}: {name} lacks an Args: entry"
    assert main(["rules"]) == 0
    listing = capsys.readouterr().out
    assert f"ngf.plugins.{rule}" in listing
    for name, default in hyperparameters(rule).items():
        assert f" {name}={default!r} " in listing, f"ngf rules does not list {rule}'s {name}"


def test_all_run_through_compare_and_sweep(tmp_path):
    out = tmp_path / "cmp"
    assert main(["compare", "--rules", ",".join(ZOO), "--datasets", "tiny", "--epochs", "1",
                 "--out", str(out), *TINY]) == 0
    with open(out / "results.csv") as handle:
        runs = list(csv.DictReader(handle))
    assert sorted(r["variant"] for r in runs) == sorted(ZOO)
    for r in runs:
        summary = json.loads((out / r["folder"] / "summary.json").read_text())
        assert summary["status"] == "completed" and summary["rule"] == r["variant"]
    for rule in ZOO:  # a sweep over each rule's first hyperparameter, at its default
        name, default = next(iter(hyperparameters(rule).items()))
        assert main(["sweep", "--rule", rule, "--dataset", "tiny", "--grid", f"{name}={default}",
                     "--epochs", "1", "--out", str(tmp_path / f"sw-{rule}"), *TINY]) == 0
