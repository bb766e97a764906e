"""Issue 32, part A: data read as it is or refused, [plan] tables checked like the command line,
no traceback for scaled epochs or huge padding, nothing that has no effect accepted silently,
and MLflow's default store one that MLflow 3 opens as it is.

The bad inputs are rows of docs/errors.md too (tests/test_errors_doc.py runs them); these
tests cover what the rows cannot: the Python functions, the order of output lines, stores.
"""

import importlib.util
import os
import types
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

import ngf
from conftest import make_tiny
from ngf.cli import main
from ngf.core.rule_checks import checked_rule_updates
from ngf.data import images
from ngf.data.folder import load_folder
from ngf.experiments.planfile import read_plan
from ngf.host.hookspecs import hookimpl


def one_line(capsys) -> str:
    output = capsys.readouterr()
    lines = (output.out + output.err).strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    return lines[0]


def write_tree(root: Path, counts: dict) -> Path:
    from PIL import Image

    image = Image.fromarray(np.zeros((6, 6), dtype=np.uint8))
    for folder, count in counts.items():
        (root / folder).mkdir(parents=True)
        for i in range(count):
            image.save(root / folder / f"{i}.png")
    return root


# 4. Data is read as it is, or refused


def test_a_missing_label_is_refused_naming_split_and_row_not_made_a_class():
    with pytest.raises(ngf.NgfError, match=r"split 'test' row 2 has no label \(None\) \(and 1 more rows\)"):
        images.class_indices([[0, 1, 2], [1, 0, None, None]], None, "dataset x")
    with pytest.raises(ngf.NgfError, match="split 'train' row 0 has no label"):  # a ClassLabel's too
        images.class_indices([[None, 1], [0]], ["a", "b"], "dataset x")


@pytest.mark.parametrize("label", [2 ** 31, 2 ** 31 + 5, 2 ** 63 + 1, 2 ** 70, -1])
def test_labels_outside_int32_class_indices_are_named_with_their_true_value(label):
    with pytest.raises(ngf.NgfError, match=f"split 'train' row 1 has label {label};"):
        images.class_indices([[0, label, 1], [0, 1]], None, "dataset x")


def test_integer_and_string_labels_still_read_as_before():
    (train, test), count = images.class_indices([[0, 4, 1], [2]], None, "dataset x")
    assert count == 5 and train.dtype == np.int32 and list(test) == [2]
    (train, _), count = images.class_indices([["cat", "dog"], ["cat"]], None, "dataset x")
    assert count == 2 and list(train) == [0, 1]


@pytest.mark.parametrize("empty", ["train/b", "test/a"])
def test_a_class_folder_without_images_is_refused_in_either_split(tmp_path, empty):
    counts = {"train/a": 2, "train/b": 2, "test/a": 1, "test/b": 1, empty: 0}
    tree = write_tree(tmp_path / "tree", counts)
    with pytest.raises(ngf.NgfError, match=f"class folder {tree / empty} holds no images"):
        load_folder(str(tree))


def test_a_tree_with_test_but_no_train_says_so(tmp_path):
    tree = write_tree(tmp_path / "tree", {"test/a": 1, "test/b": 1})
    with pytest.raises(ngf.NgfError, match="has test/ but no train/"):
        load_folder(str(tree))


def test_an_empty_split_says_it_is_empty():
    tiny = make_tiny()
    with pytest.raises(ngf.NgfError, match="the train split is empty"):
        ngf.run(dataset=tiny._replace(x_train=tiny.x_train[:0], y_train=tiny.y_train[:0]))


def test_the_held_out_note_waits_for_the_run_and_comes_after_its_start_line(tmp_path, capsys):
    tree = write_tree(tmp_path / "flat", {"a": 5, "b": 5})
    load_folder(str(tree))
    assert capsys.readouterr().err == ""  # held until a run starts
    load_folder(str(tree))
    assert len(images.NOTES) == 1  # a second read replaces the first's note, never stacks it
    images.NOTES.clear()
    status = main(["run", "--dataset", f"folder:{tree}", "--rule", "bp", "--epochs", "1", "--batch-size", "4",
                   "--model-opt", "widths=4", "--out", str(tmp_path / "out")])
    output = capsys.readouterr()
    assert status == 0
    assert output.err.count("note: folder:") == 1 and "has no test split" in output.err
    assert output.out.index("ngf bp on mlp") >= 0 and not images.NOTES


# 5. [plan] tables are checked like the command line


def plan_file(tmp_path, text: str) -> Path:
    path = tmp_path / "plan.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("values, repeated", [("[0.1, 0.1]", "0.1"), ("[1e-3, 0.001]", "0.001"),
                                              ("[[8, 8], [8, 8]]", "8,8")])
def test_a_grid_value_twice_is_refused_as_on_the_command_line(tmp_path, values, repeated):
    path = plan_file(tmp_path, f'[plan]\nrules = ["bp"]\n[plan.grid]\nkey = {values}\n')
    with pytest.raises(ngf.NgfError, match=f"grid key lists {repeated} twice; give each once"):
        read_plan(path)


@pytest.mark.parametrize("text", ['rules = [["bp"]]', 'datasets = [["mnist"]]', "seeds = [[0], [1]]",
                                  'rules = ["bp"]\n[plan.grid]\nlr = [[[0.1]]]', 'rules = ["bp"]\n[plan.grid]\nlr = [{a = 1}]'])
def test_nested_lists_in_a_plan_are_one_line(tmp_path, text):
    with pytest.raises(ngf.NgfError) as caught:
        read_plan(plan_file(tmp_path, f"[plan]\n{text}\n"))
    assert "\n" not in str(caught.value) and "[plan]" in str(caught.value)


def test_a_one_level_list_is_still_a_grid_value(tmp_path):
    path = plan_file(tmp_path, '[plan]\nrules = ["bp"]\n[plan.grid]\n"model.widths" = [[8, 8], [16]]\n')
    assert read_plan(path)["grid"] == [("model.widths", ["8,8", "16"])]


# 6. No traceback: scaled epochs, padding too large


@pytest.mark.parametrize("scale", ["inf", "nan", "-inf"])
def test_an_epochs_scale_that_is_not_finite_is_one_line(scale, capsys):
    assert main(["run", f"--epochs-scale={scale}", "--quiet"]) == 2
    assert "epochs-scale must be a positive number" in one_line(capsys)
    with pytest.raises(ngf.NgfError, match="epochs-scale must be a positive number"):
        ngf.run(epochs_scale=float(scale), dataset=make_tiny())


def test_padding_is_measured_before_anything_is_allocated(monkeypatch):
    from ngf.runs import protocol

    monkeypatch.setattr(protocol, "available_bytes", lambda: (10 ** 6, "of memory on this machine"))
    monkeypatch.setattr(np, "pad", lambda *a, **k: pytest.fail("padded before the estimate"))
    with pytest.raises(ngf.NgfError, match=r"--pad-to 64: the 136 images of dataset 'custom' padded to 64×64 "
                                           r"take 557 kB; training holds 2 copies of them \(1.11 MB\), more "
                                           r"than the 1 MB of memory"):
        ngf.run(pad_to=64, dataset=make_tiny())


# 7. No silent acceptance of what has no effect


def test_gamma_without_the_multistep_schedule_is_refused_as_momentum_without_one_is(capsys, tmp_path):
    assert main(["run", "--gamma", "0.5", "--quiet"]) == 2
    assert one_line(capsys) == "error: --gamma applies to --schedule multistep, not cosine"
    (tmp_path / "run.toml").write_text("gamma = 0.2\n")  # a config file, as the command line
    assert main(["run", "--config", str(tmp_path / "run.toml"), "--quiet"]) == 2
    assert one_line(capsys) == "error: --gamma applies to --schedule multistep, not cosine"
    with pytest.raises(ngf.NgfError, match="--gamma applies to --schedule multistep, not constant"):
        ngf.run(gamma=0.5, schedule="constant", dataset=make_tiny())


def test_a_ray_address_without_ray_is_refused_for_sweep_too(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", "--grid", "lr=0.1", "--ray-address", "auto", "--out", str(out)]) == 2
    assert one_line(capsys) == "error: --ray-address applies to --executor ray, not local"
    assert not out.exists()


@pytest.mark.parametrize("given", ["0", "-3", "30.0", "x", "1e3"])
def test_every_bad_padding_size_gets_the_same_message(given, capsys):
    assert main(["run", "--pad-to", given, "--quiet"]) == 2
    assert "pad-to must be a positive integer (the side S of the S×S padded images), got " in one_line(capsys)


def test_integer_updates_of_a_rules_own_parameters_are_refused():
    rule = ngf.LearningRule(ngf.stateless_init, None, None, name="mine")
    with pytest.raises(ngf.NgfError, match="rule 'mine': the update of its parameter .* is int32; updates must "
                                           "be floating-point"):
        checked_rule_updates(rule, {"e": jnp.zeros(3)}, {"e": jnp.zeros(3, jnp.int32)})
    assert checked_rule_updates(rule, {"e": jnp.zeros(3)}, {"e": jnp.ones(3, jnp.bfloat16)}) is not None


@pytest.mark.parametrize("kind, hook", [("rule", "ngf_register_rules"), ("model", "ngf_register_models"),
                                        ("dataset", "ngf_register_datasets")])
@pytest.mark.parametrize("name", ["", " ", "a,b", "hf:x", " lra"])
def test_a_name_no_command_can_select_is_refused_at_registration(kind, hook, name):
    plugin = types.ModuleType("unselectable")
    setattr(plugin, hook, hookimpl(lambda: {name: lambda: None}))
    with pytest.raises(ngf.NgfError) as caught:
        ngf.load_registry([plugin])
    assert str(caught.value).startswith(f"plugin 'unselectable' registers the {kind} name {name!r}, which no "
                                        "command can select")


# 11. MLflow's default store


def test_an_unknown_default_store_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv("NGF_MLFLOW_STORE", "postgres")
    assert main(["run", "--log", "mlflow", "--quiet"]) == 2
    assert "$NGF_MLFLOW_STORE must be sqlite or file" in one_line(capsys)


def test_a_sqlite_store_without_sqlalchemy_names_the_extra_and_the_file_store(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "sqlalchemy" else real(name, *a))
    assert main(["run", "--log", "mlflow", "--quiet"]) == 2
    line = one_line(capsys)
    assert "needs sqlalchemy" in line and "pip install 'ngf[mlflow]'" in line and "NGF_MLFLOW_STORE=file" in line


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None or importlib.util.find_spec("sqlalchemy") is None,
                    reason="the mlflow extra is not installed")
def test_the_default_store_is_sqlite_in_the_run_folder_and_mlflow_opens_it_as_it_is(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    out = tmp_path / "run"
    ngf.run(rule="bp", dataset=make_tiny(), epochs=1, batch_size=48, model_opts={"widths": (4,)}, out=str(out),
            log=("mlflow",))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing beside the run folder
    assert {"mlflow.db", "mlartifacts"} <= {p.name for p in out.iterdir()} and not (out / "mlruns").exists()
    assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ
    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    run, = client.search_runs([client.get_experiment_by_name("ngf").experiment_id])
    assert run.info.status == "FINISHED" and set(client.get_metric_history(run.info.run_id, "test_loss")) != set()
    assert run.info.artifact_uri.startswith((out / "mlartifacts").as_uri())
    assert "config.toml" in {a.path for a in client.list_artifacts(run.info.run_id)}


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="the mlflow extra is not installed")
def test_the_file_store_is_an_explicit_choice(tmp_path, monkeypatch):
    from ngf.plugins.mlflow_logger import tracking_uri

    run = types.SimpleNamespace(experiment=None, out=tmp_path / "run")
    assert tracking_uri(None, run) == f"sqlite:///{(tmp_path / 'run').resolve() / 'mlflow.db'}"
    monkeypatch.setenv("NGF_MLFLOW_STORE", "file")
    assert tracking_uri(None, run) == (tmp_path / "run" / "mlruns").resolve().as_uri()
    assert tracking_uri(str(tmp_path / "store"), run) == (tmp_path / "store").resolve().as_uri()
