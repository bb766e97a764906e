"""A node declared atomic (trained by backprop inside) is recorded: summary.json's ``atomic_nodes``
and the run's start line name it, for a run alone and for each run of a stack (issue 29)."""

import io
import json

from rich.console import Console

import ngf
from conftest import make_tiny
from ngf.cli import main
from ngf.cli.ui import RichCallbacks

TINY = {"dataset": make_tiny(), "epochs": 1, "batch_size": 32}  # two-maps: width 8
NOTE = "atomic, trained by backprop inside: layer 1 (TwoMaps)"


def _run(model: str, **options) -> tuple[dict, str]:
    """The summary of a one-epoch run of ``model`` on tiny data, and what the console printed."""
    screen = io.StringIO()
    callbacks = RichCallbacks(Console(file=screen, width=300, highlight=False), 1, quiet=False)
    summary = ngf.run(registry=ngf.load_registry(["ngf_two_maps"]), callbacks=callbacks,
                      **{**TINY, "model": model, **options})
    return summary, screen.getvalue()


def test_an_atomic_node_is_named_in_the_summary_and_on_the_start_line(tmp_path):
    summary, printed = _run("two-maps-atomic", rule="fa", out=str(tmp_path / "run"))
    assert summary["atomic_nodes"] == ["layer 1 (TwoMaps)"]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["atomic_nodes"] == ["layer 1 (TwoMaps)"]
    start = printed.splitlines()[0]
    assert start.startswith("ngf fa on two-maps-atomic / custom: 3 steps per epoch") and start.endswith(NOTE)


def test_a_model_without_one_records_an_empty_list_and_says_nothing():
    summary, printed = _run("mlp", rule="bp", model_opts={"widths": (8,)})
    assert summary["atomic_nodes"] == [] and "atomic" not in printed


def test_each_run_of_a_stack_records_its_atomic_node(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--plugin", "ngf_tiny_data", "--plugin", "ngf_two_maps", "--rules", "bp",
                 "--dataset", "tiny", "--model", "two-maps-atomic", "--seeds", "0,1",
                 "--epochs", "1", "--batch-size", "32", "--stack", "2", "--out", str(out)]) == 0
    starts = [line for line in capsys.readouterr().out.splitlines() if line.startswith("ngf bp on")]
    assert len(starts) == 2 and all("of a stack of 2" in line and line.endswith(NOTE) for line in starts)
    for seed in (0, 1):
        summary = json.loads((out / "tiny" / "bp" / f"seed{seed}" / "summary.json").read_text())
        assert summary["stack"]["size"] == 2 and summary["atomic_nodes"] == ["layer 1 (TwoMaps)"]
