"""Stacked runs (``--stack``): seeds trained as one vmapped program, each run keeping its own folder."""

import dataclasses
import json

import pytest

import ngf.testing
from ngf import run
from ngf.cli import main
from ngf.experiments.plan import plan
from ngf.experiments.runner import execute
from ngf.experiments.stacked import groups
from ngf.host.registry import load_registry
from ngf.runs.callbacks import Callbacks
from ngf.runs.config import RunConfig
from ngf_nan_seed import poisoned

TINY_MLP = {"widths": (8,)}
TINY_CNN = {"channels": (2,), "widths": (8,)}
METRICS = ("epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy")
#: a rule of each kind of state for the kit's stack check (fa and bp run stacked through the runner below)
STACK_KINDS = {"brsf": "a key split in its state", "dtp": "trainable parameters, a metric, the step key",
               "kp": "apply_changes", "local-search": "applies_directly", "pc": "a relaxation and a metric",
               "pepita": "a second forward pass"}


@pytest.fixture(scope="module")
def registry():
    return load_registry(["ngf_tiny_data", "ngf_nan_seed"])


class Recorder(Callbacks):
    """Records every event of one run; raises KeyboardInterrupt after epoch ``stop_after``, if set."""

    def __init__(self, events: list, seed: int, stop_after: int | None = None):
        self.events, self.seed, self.stop_after = events, seed, stop_after

    def on_start(self, info):
        self.events.append((self.seed, "start", info.get("stack")))

    def on_epoch(self, record):
        self.events.append((self.seed, "epoch", record["epoch"]))
        if record["epoch"] == self.stop_after:
            raise KeyboardInterrupt

    def on_end(self, summary):
        self.events.append((self.seed, "end", summary["status"]))


def _plan(out, registry, rule="fa", seeds=(0, 1, 2), model="mlp", opts=TINY_MLP, **options):
    base = RunConfig(rule=rule, model=model, dataset="tiny", epochs=2, batch_size=32, model_opts=dict(opts), **options)
    return plan(base, [rule], ["tiny"], list(seeds), [], out, registry)


def _metrics(folder) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def _close(stacked: list[dict], alone: list[dict]) -> None:
    """Per-epoch metrics within 1e-4 (the seconds apart)."""
    assert [r["epoch"] for r in stacked] == [r["epoch"] for r in alone]
    for mine, theirs in zip(stacked, alone):
        assert all(abs(mine[k] - theirs[k]) <= 1e-4 for k in METRICS), (mine, theirs)


def _lone(item, registry, epochs=None) -> list[dict]:
    """The history of ``item``'s run alone, through ``ngf.run`` (no folder)."""
    config = dataclasses.replace(item.config, out=None, experiment=None, epochs=epochs or item.config.epochs)
    return run(config, registry=registry)["history"]


@pytest.mark.parametrize("rule, model, opts, seeds", [("fa", "mlp", TINY_MLP, (0, 1)),  # fa: a rule with state
                                                      ("bp", "cnn", TINY_CNN, (0, 1))])
def test_a_stack_trains_each_seed_as_its_run_alone_would(tmp_path, registry, rule, model, opts, seeds):
    events, lines = [], []
    runs = _plan(tmp_path / "stacked", registry, rule, seeds, model, opts)
    summaries = execute(runs, registry, lambda item: Recorder(events, item.seed), stack=len(seeds),
                        report=lines.append)
    assert f"running with seeds {', '.join(map(str, seeds))} as one stack" in lines[0]
    alone_runs = _plan(tmp_path / "alone", registry, rule, seeds, model, opts)
    alone = execute(alone_runs, registry, stack=1, report=lambda line: None)
    for index, (item, summary, lone) in enumerate(zip(runs, summaries, alone)):
        assert summary["status"] == "completed" and summary["stack"] == {"size": len(seeds), "index": index}
        assert json.loads((item.folder / "summary.json").read_text())["stack"] == summary["stack"]
        assert {p.name for p in item.folder.iterdir()} == {"config.toml", "metrics.jsonl", "summary.json",
                                                           "checkpoint.msgpack"}
        _close(_metrics(item.folder), lone["history"])
        assert "stack" not in lone  # --stack 1: today's path, its summary as it was
        assert [e for e in events if e[0] == item.seed] == [
            (item.seed, "start", summary["stack"]), (item.seed, "epoch", 1), (item.seed, "epoch", 2),
            (item.seed, "end", "completed")]
    if rule == "fa":  # --stack 1 is ngf.run's run, bit for bit
        assert [{k: r[k] for k in METRICS} for r in alone[0]["history"]] == [
            {k: r[k] for k in METRICS} for r in _lone(alone_runs[0], registry)]


@pytest.mark.parametrize("rule_name", sorted(STACK_KINDS))
def test_each_kind_of_rule_stacks_as_it_runs_alone(registry, rule_name):
    """ngf.testing's check on the engines: two seeds as one stack give each seed's lone run, within 1e-4."""
    rule = registry.get("rule", rule_name).factory()
    ngf.testing.check_stack_matches_lone(rule, "mlp", name=rule_name, rank_promotion="raise", tolerance=1e-4)


def test_a_diverging_member_stops_alone_and_the_others_complete(tmp_path, registry, capsys):
    good = [s for s in range(20) if not poisoned(s)][:2]
    bad = next(s for s in range(20) if poisoned(s))
    seeds = [good[0], bad, good[1]]
    out = tmp_path / "cmp"
    assert main(["compare", "--plugin", "ngf_tiny_data", "--plugin", "ngf_nan_seed", "--rules", "nan-bp",
                 "--dataset", "tiny", "--seeds", ",".join(map(str, seeds)), "--epochs", "2", "--batch-size", "32",
                 "--model-opt", "widths=8", "--stack", "3", "--quiet", "--out", str(out)]) == 0
    assert f"seed {bad}: training diverged in epoch 2 of 2" in " ".join(capsys.readouterr().out.split())
    folders = {seed: out / "tiny" / "nan-bp" / f"seed{seed}" for seed in seeds}
    diverged = json.loads((folders[bad] / "summary.json").read_text())
    assert diverged["status"] == "diverged" and diverged["diverged_epoch"] == 2
    assert diverged["stack"] == {"size": 3, "index": 1} and len(_metrics(folders[bad])) == 1  # epoch 1 kept
    for index in (0, 2):
        summary = json.loads((folders[seeds[index]] / "summary.json").read_text())
        assert summary["status"] == "completed" and summary["epochs_completed"] == 2
    _close(_metrics(folders[seeds[2]]), _lone(_plan(out, registry, "nan-bp", seeds)[2], registry))


def test_interrupted_members_each_get_their_summary_and_resume(tmp_path, registry, capsys):
    runs = _plan(tmp_path / "cmp", registry)
    with pytest.raises(KeyboardInterrupt) as caught:  # after every member recorded epoch 1
        execute(runs, registry, lambda item: Recorder([], item.seed, 1 if item.seed == 2 else None), stack=3,
                report=lambda line: None)
    assert [s["status"] for s in caught.value.summaries] == ["interrupted"] * 3
    for item in runs:
        summary = json.loads((item.folder / "summary.json").read_text())
        assert summary["status"] == "interrupted" and summary["epochs_completed"] == 1
        assert summary["stack"] == {"size": 3, "index": item.seed}
    # one member alone, with ngf run --resume; the other two again as a stack, from their checkpoints
    assert main(["run", "--plugin", "ngf_tiny_data", "--resume", str(runs[0].folder), "--quiet"]) == 0
    lines = []
    summaries = execute(runs, registry, stack=3, report=lines.append)
    assert "finished earlier" in lines[0] and "resuming with seeds 1, 2 as one stack" in lines[1]
    assert [s["status"] for s in summaries] == ["completed"] * 3
    assert "stack" not in summaries[0] and summaries[2]["stack"] == {"size": 2, "index": 1}
    for item in runs:
        _close(_metrics(item.folder), _lone(item, registry))


def test_runs_stack_when_they_differ_only_in_seed_and_lr(tmp_path, registry):
    def prepared(**changes):
        return dataclasses.replace(_plan(tmp_path, registry)[0].config, **changes), None

    same = [prepared(seed=s) for s in range(5)]
    assert groups(same, 4) == [[0, 1, 2, 3]]  # the fifth would be a stack of one: alone
    assert groups(same, 1) == []
    mixed = [prepared(seed=0), prepared(seed=1, lr=0.1), prepared(seed=2, batch_size=16), prepared(seed=3, val_split=8),
             prepared(seed=4, val_split=8), (same[0][0], {"status": "completed"}), prepared(seed=5, lr=0.5),
             prepared(seed=6, batch_size=16), prepared(seed=7, track_alignment=True)]
    assert groups(mixed, 8) == [[0, 1, 6], [2, 7]]
    assert groups(mixed, 2) == [[0, 1], [2, 7]]  # seed 5 alone
    rms = [prepared(seed=s, lr=lr, optimizer="rmsprop", momentum=0.9) for s, lr in ((0, 0.1), (1, 0.2), (2, 0.1))]
    assert groups(rms, 8) == [[0, 2]]  # its momentum holds lr-scaled changes: one lr per stack


def test_a_stack_of_learning_rates_trains_each_as_alone_and_a_diverging_one_stops(tmp_path, registry):
    base = RunConfig(rule="bp", dataset="tiny", epochs=2, batch_size=32, model_opts=dict(TINY_MLP),
                     schedule="constant")  # a resume may extend it (a cosine run's length is fixed)
    runs = plan(base, ["bp"], ["tiny"], [0], [("lr", ["0.003", "0.03", "1e6"])], tmp_path, registry)
    lines = []
    summaries = execute(runs, registry, stack=3, report=lines.append)
    assert "running as one stack with bp lr=0.003 seed 0, bp lr=0.03 seed 0, bp lr=1e6 seed 0" in lines[0]
    assert "training diverged in epoch 1" in lines[1]
    assert [s["status"] for s in summaries] == ["completed", "completed", "diverged"]
    assert summaries[2]["stack"] == {"size": 3, "index": 2}
    _close(_metrics(runs[1].folder), _lone(runs[1], registry))
    # its checkpoint is a lone run's (the optimiser's state holds no lr): resumed alone, one epoch more
    extended = run(dataclasses.replace(runs[1].config, resume=True, epochs=3), registry=registry)
    assert extended["status"] == "completed" and extended["history"][:2] == _metrics(runs[1].folder)[:2]


def test_the_console_lines_of_a_stack_name_each_run_by_its_seed(tmp_path, capsys):
    """The members' epoch lines interleave: each starts with its seed; a lone run's lines do not."""
    argv = ["compare", "--plugin", "ngf_tiny_data", "--rules", "bp", "--dataset", "tiny", "--seeds", "3,4",
            "--epochs", "2", "--batch-size", "32", "--model-opt", "widths=8"]
    assert main([*argv, "--stack", "2", "--out", str(tmp_path / "stacked")]) == 0
    lines = capsys.readouterr().out.splitlines()
    starts = [line for line in lines if " steps per epoch" in line]
    assert [s.split("(")[-1] for s in starts] == ["seed 3, run 1 of a stack of 2)", "seed 4, run 2 of a stack of 2)"]
    epochs = [line.split(" · epoch")[0] for line in lines if "epoch   " in line]
    assert epochs == ["seed 3", "seed 4", "seed 3", "seed 4"]
    assert main([*argv, "--stack", "1", "--out", str(tmp_path / "alone")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("epoch   ") for line in lines) == 4 and not any("seed 3 · " in x for x in lines)
