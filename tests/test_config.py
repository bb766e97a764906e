"""Config files: TOML round trips, precedence of explicit options, repeating a run from its config."""

import json
import math
import tomllib

import pytest

from ngf.cli import build_parser, main
from ngf.cli.options import config_from_args
from ngf.runs.configfile import dumps, merge, read
from ngf.core.errors import NgfError

TINY = ["--plugin", "ngf_tiny_data", "--dataset", "tiny"]


def test_toml_writer_round_trips_every_value_type(tmp_path):
    record = {"rule": "lra", "lr": 1e-05, "epochs": 3, "overwrite": False, "data_dir": 'a "quoted" path\\x',
              "steps_per_call": None, "rule_opts": {"beta": 0.1, "learn_e": True, "e_dist": "normal"},
              "model_opts": {"widths": (256, 128), "activation": "tanh"}}
    path = tmp_path / "c.toml"
    path.write_text(dumps(record, "a header\nof two lines"))
    back = read(path)
    del record["steps_per_call"]  # TOML has no null: left out, which reads back as the default
    assert back == record
    assert tomllib.loads(dumps({"lr": math.inf}))["lr"] == math.inf


def test_unwritable_values_become_comments():
    text = dumps({"rule": object(), "lr": 0.1})
    assert "# rule:" in text and tomllib.loads(text) == {"lr": 0.1}


def test_unknown_keys_and_bad_files_are_clean_errors(tmp_path):
    (tmp_path / "bad.toml").write_text("lr = 0.1\nlearning_rate = 2\n")
    with pytest.raises(NgfError, match="unknown option 'learning_rate'"):
        read(tmp_path / "bad.toml")
    (tmp_path / "broken.toml").write_text("lr = \n")
    with pytest.raises(NgfError, match="not valid TOML"):
        read(tmp_path / "broken.toml")
    with pytest.raises(NgfError, match="does not exist"):
        read(tmp_path / "missing.toml")


def _args(argv):
    return build_parser().parse_args(argv)  # args.given: what argv typed


def test_only_explicit_options_override_the_file(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('rule = "lra"\nlr = 0.01\nepochs = 7\n[rule_opts]\nbeta = 0.3\ngamma = 2.0\n')
    config = config_from_args(_args(["run", "--config", str(path), "--lr", "0.001", "--rule-opt", "beta=0.5"]))
    assert config.lr == 0.001  # given, even though it equals the parser's default
    assert config.epochs == 7  # not given: the file's
    assert config.rule_opts == {"beta": "0.5", "gamma": 2.0}  # merged by name
    other = config_from_args(_args(["run", "--config", str(path), "--rule", "bp"]))
    assert other.rule == "bp" and other.rule_opts == {}  # the file's rule_opts belong to lra


def test_merge_drops_options_of_a_replaced_model():
    merged = merge({"model": "mlp", "model_opts": {"widths": (8,)}}, {"model": "cnn"})
    assert merged == {"model": "cnn"}


def test_resume_and_config_together_are_refused(tmp_path):
    with pytest.raises(NgfError, match="do not pass --config"):
        config_from_args(_args(["run", "--config", "a.toml", "--resume", str(tmp_path)]))


def test_a_run_writes_its_config_and_repeats_from_it(tmp_path, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    argv = ["run", *TINY, "--rule", "lra", "--epochs", "2", "--batch-size", "16", "--lr", "0.02",
            "--init", "glorot:0.5", "--schedule", "constant", "--model-opt", "widths=12",
            "--rule-opt", "beta=0.2", "--quiet"]
    assert main(argv + ["--out", str(first)]) == 0
    config = read(first / "config.toml")
    assert config["rule_opts"]["beta"] == 0.2 and config["rule_opts"]["learn_e"] is False  # complete
    assert config["model_opts"] == {"widths": (12,), "activation": "relu", "bias": True, "dropout": 0.0}
    assert config["init"] == "glorot:0.5" and config["schedule"] == "constant" and "out" not in config
    assert main(["run", "--plugin", "ngf_tiny_data", "--config", str(first / "config.toml"),
                 "--out", str(second), "--quiet"]) == 0
    a, b = (json.loads((d / "summary.json").read_text()) for d in (first, second))
    assert a["test_loss"] == b["test_loss"] and a["train_loss"] == b["train_loss"]
    assert read(second / "config.toml") == config
    capsys.readouterr()


def test_every_run_option_declares_its_roles_once_and_every_role_is_played():
    """ngf.runs.fields: each list of options by role derives from the fields' declarations."""
    import dataclasses

    from ngf.runs.fields import FIELDS_WITH, ROLES, RunFields, option

    names = [f.name for f in dataclasses.fields(RunFields)]
    assert all(FIELDS_WITH[role] for role in ROLES)  # no role is declared and never played
    assert all(set(FIELDS_WITH[role]) <= set(names) for role in ROLES)
    assert [name for name in names if name in FIELDS_WITH["not_written"]] == list(FIELDS_WITH["not_written"])
    assert {"out", "resume"} <= set(FIELDS_WITH["not_written"]) and "epochs" in FIELDS_WITH["may_differ_on_resume"]
    with pytest.raises(ValueError, match="unknown role 'writen'"):
        option(None, "writen")
