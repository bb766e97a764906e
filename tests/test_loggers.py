"""The TensorBoard, W&B and MLflow loggers (issue 17), read back by each tool's own library.

W&B never touches the network here: with neither ``WANDB_MODE`` nor ``WANDB_API_KEY``
set the logger runs offline, and its run folder's ``.wandb`` file is parsed with W&B's
own protocol buffers. TensorBoard's event files are read with its
``EventAccumulator``, MLflow's local store with ``MlflowClient``.
"""

from __future__ import annotations

import json
import os
import re
import struct
import types
from pathlib import Path

import pytest

import ngf
from conftest import make_tiny
from ngf.cli import main
from ngf.experiments.runs import find_runs

tensorboard = pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
wandb = pytest.importorskip("wandb", reason="the wandb extra is not installed")

METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")


@pytest.fixture(autouse=True)
def offline_wandb(tmp_path, monkeypatch):
    """No W&B account, no network: the logger must choose offline mode itself."""
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-elsewhere"))  # ngf passes its own dir
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))


def tensorboard_scalars(folder: Path) -> dict:
    """``{tag: {step: value}}`` and ``{tag: [text, ...]}`` of the event files in ``folder``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    events = EventAccumulator(str(folder))
    events.Reload()
    values, texts = {}, {}
    for tag in events.Tags()["tensors"]:
        for event in events.Tensors(tag):
            value = tensor_util.make_ndarray(event.tensor_proto)
            if value.dtype == object:
                texts.setdefault(tag, []).append(value.item().decode())
            else:
                values.setdefault(tag, {})[event.step] = float(value)
    return {"scalars": values, "texts": texts}


def wandb_records(run_folder: Path) -> list:
    """The records of an offline run's ``.wandb`` file (a LevelDB-style log of W&B protobufs)."""
    from wandb.proto import wandb_internal_pb2

    data = next(run_folder.glob("run-*.wandb")).read_bytes()
    assert data[:4] == b":W&B"
    records, position, pending, block = [], 7, b"", 32768  # 7-byte header; records never straddle a block header
    while position + 7 <= len(data):
        if block - position % block < 7:
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        pending += data[position + 7:position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a full record, or the last part of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def wandb_run(run_folder: Path) -> dict:
    """The run's name, group, config, per-step history and summary, from its records."""
    found = {"history": {}, "summary": {}, "config": {}}
    for record in wandb_records(run_folder):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            found.update(name=record.run.display_name, group=record.run.run_group, project=record.run.project)
            found["config"].update({i.key: json.loads(i.value_json) for i in record.run.config.update})
        elif kind == "history":
            row = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
            found["history"][row["_step"]] = row
        elif kind == "summary":
            found["summary"].update({i.key: json.loads(i.value_json) for i in record.summary.update if i.key})
        elif kind == "exit":
            found["exit_code"] = record.exit.exit_code
    return found


def mlflow_runs(folder: Path, experiment: str) -> dict:
    """``{run name: (run, {metric: {step: value}})}`` of one experiment in the store ``--log mlflow`` made in
    ``folder``: its default ``mlflow.db`` (sqlite, opened as MLflow's own tools open it), else ``mlruns/``."""
    from mlflow.tracking import MlflowClient

    if (folder / "mlflow.db").is_file():
        client = MlflowClient(tracking_uri=f"sqlite:///{folder.resolve() / 'mlflow.db'}")
    else:
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
        try:
            client = MlflowClient(tracking_uri=(folder / "mlruns").resolve().as_uri())
        finally:
            del os.environ["MLFLOW_ALLOW_FILE_STORE"]
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r} in {store}"
    runs = {}
    for run in client.search_runs([found.experiment_id]):
        history = {key: {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)}
                   for key in run.data.metrics}
        runs[run.info.run_name] = (run, history, client)
    return runs


def test_one_run_logs_epochs_config_alignment_and_summary_to_all_three(tmp_path):
    out = tmp_path / "run"
    summary = ngf.run(rule="fa", dataset=make_tiny(), epochs=2, batch_size=16, out=str(out), track_alignment=True,
                      model_opts={"widths": (8,)}, log=("tensorboard", "wandb:ngf-tests", "mlflow"))
    history = summary["history"]

    board = tensorboard_scalars(out / "tb")
    for key in METRICS:
        assert board["scalars"][key] == pytest.approx({r["epoch"]: r[key] for r in history}, rel=1e-6)
    assert set(board["scalars"]["alignment_degrees/node_1"]) == {1, 2}
    assert json.loads(board["texts"]["config"][0].strip("`\n"))["rule_opts"]["scale"] == 1.0  # defaults in
    assert board["texts"]["status"] == ["completed"] and '"test_accuracy"' in board["texts"]["summary"][0]

    run = wandb_run(next((out / "wandb").glob("offline-run-*")))  # offline: nothing left the machine
    assert run["name"] == "fa-custom-seed0" and run["project"] == "ngf-tests" and run["exit_code"] == 0
    assert run["config"]["rule"] == "fa" and run["config"]["epochs"] == 2
    for key in METRICS:
        assert {step: row[key] for step, row in run["history"].items()} == \
            pytest.approx({r["epoch"]: r[key] for r in history})
    assert "alignment_degrees/node_2" in run["history"][2]
    assert run["summary"]["status"] == "completed"
    assert run["summary"]["test_accuracy"] == pytest.approx(summary["test_accuracy"])

    (logged, metrics, client), = mlflow_runs(out, "ngf").values()
    assert logged.info.run_name == "fa-custom-seed0" and logged.info.status == "FINISHED"
    for key in METRICS:
        assert metrics[key] == pytest.approx({r["epoch"]: r[key] for r in history})
    assert logged.data.params["rule_opts.scale"] == "1.0" and logged.data.tags["ngf.status"] == "completed"
    artifacts = {a.path for a in client.list_artifacts(logged.info.run_id)}
    assert {"config.json", "ngf-summary.json", "config.toml"} <= artifacts


def test_compare_logs_each_run_under_its_name_as_one_experiment(tmp_path, capsys):
    out = tmp_path / "cmp"
    status = main(["compare", "--plugin", "ngf_tiny_data", "--datasets", "tiny", "--rules", "bp,fa", "--seeds",
                   "0,1", "--epochs", "1", "--batch-size", "32", "--model-opt", "widths=8", "--quiet",
                   "--log", "tensorboard", "--log", "mlflow", "--log", "wandb", "--out", str(out)])
    assert status == 0, capsys.readouterr()
    names = {f"tiny/{rule}/seed{seed}" for rule in ("bp", "fa") for seed in (0, 1)}
    assert {p.parent.relative_to(out / "tb").as_posix() for p in (out / "tb").rglob("events.*")} == names
    for name in names:  # each run's own folder under one log folder
        assert set(tensorboard_scalars(out / "tb" / name)["scalars"]["test_accuracy"]) == {1}
    runs = mlflow_runs(out, "cmp")  # one experiment, named after the compare folder
    assert set(runs) == names
    assert {run.data.tags["ngf.variant"] for run, _, _ in runs.values()} == {"bp", "fa"}
    found = [wandb_run(folder) for folder in (out / "wandb").glob("offline-run-*")]
    assert {run["name"] for run in found} == names and {run["group"] for run in found} == {"cmp"}
    assert len(find_runs([out])) == 4  # `ngf plot DIR` takes no logger's file for a run of its own


def test_a_missing_library_is_one_line_naming_the_extra_before_anything_runs(tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    status = main(["run", "--plugin", "ngf_tiny_data", "--dataset", "tiny", "--log", "wandb", "--quiet",
                   "--out", str(tmp_path / "out")])
    lines = capsys.readouterr().out.strip().splitlines()
    assert status == 2 and len(lines) == 1 and "pip install 'ngf[wandb]'" in lines[0], lines
    assert not (tmp_path / "out").exists()


def test_a_logger_failing_mid_run_is_reported_once_and_the_run_goes_on(tmp_path, monkeypatch):
    """Also a run without a folder: TensorBoard writes where it is told, MLflow to ./mlflow.db."""
    from ngf.plugins import tensorboard_logger

    def broken(self, tag, value, step):
        raise OSError("disk full")

    monkeypatch.setattr(tensorboard_logger.TensorBoardRun, "scalar", broken)
    monkeypatch.chdir(tmp_path)
    problems = []

    class Watch(ngf.Callbacks):
        def on_problem(self, message):
            problems.append(message)

    summary = ngf.run(rule="bp", dataset=make_tiny(), epochs=2, batch_size=32, model_opts={"widths": (8,)},
                      log=(f"tensorboard:{tmp_path / 'tb'}", "mlflow"), callbacks=Watch())
    assert summary["status"] == "completed" and summary["epochs_completed"] == 2
    assert len(problems) == 1 and "tensorboard_logger" in problems[0] and "disk full" in problems[0]
    assert "\n" not in problems[0]
    (logged, metrics, _), = mlflow_runs(tmp_path, "ngf").values()  # the other logger went on
    assert set(metrics["test_loss"]) == {1, 2} and logged.info.status == "FINISHED"
    assert logged.data.params["rule"] == "bp" and logged.data.params["model_opts.widths"] == "8"


def test_wandb_keeps_the_users_own_mode_when_configured(monkeypatch):
    from ngf.plugins.wandb_logger import configured

    assert not configured()
    monkeypatch.setenv("WANDB_MODE", "online")
    assert configured()


def test_the_third_party_logger_example_in_docs_plugins_md_logs_a_run(tmp_path):
    doc = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text()
    code = next(b for b in re.findall(r"```python\n(.*?)\n```", doc, re.S) if "my_jsonl_logger" in b)
    module = types.ModuleType("my_jsonl_logger")
    exec(compile(code, "docs/plugins.md", "exec"), module.__dict__)
    registry = ngf.load_registry(extra_plugins=[module])
    ngf.run(rule="bp", dataset=make_tiny(), epochs=2, batch_size=32, model_opts={"widths": (8,)},
            out=str(tmp_path / "run"), registry=registry)
    lines = [json.loads(line) for line in (tmp_path / "run" / "bp-seed0.jsonl").read_text().splitlines()]
    assert lines[0]["rule"] == "bp" and [r["epoch"] for r in lines[1:3]] == [1, 2]
    assert lines[3]["status"] == "completed" and module.OPEN == {}
