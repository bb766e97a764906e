"""A run's spec: its options bound to their factories once, and "same run?" decided by its differences."""

import dataclasses
import types
from pathlib import Path

import pytest

import ngf
from ngf.cli import main
from ngf.experiments.runner import same_config
from ngf.host import options as host_options
from ngf.host.hookspecs import hookimpl
from ngf.host.registry import load_registry
from ngf.runs.configfile import dumps, read
from ngf.runs.fields import FIELDS_WITH
from ngf.runs.spec import RunSpec

TINY = ["--plugin", "ngf_tiny_data", "--dataset", "tiny"]
REGISTRY = load_registry()


def count_bindings(monkeypatch) -> list:
    """The factories whose signature is read to bind options (``ngf.host.options.bind_options``), one entry
    per binding, from now on: wherever a run binds them, it goes through there."""
    factories, read_signature = [], host_options.factory_options

    def counted(factory, *args, **kwargs):
        factories.append(factory)
        return read_signature(factory, *args, **kwargs)

    monkeypatch.setattr(host_options, "factory_options", counted)
    return factories


def test_one_run_and_its_resume_bind_the_rules_options_once(tmp_path, monkeypatch, capsys):
    bound = count_bindings(monkeypatch)
    lra, mlp = REGISTRY.get("rule", "lra").factory, REGISTRY.get("model", "mlp").factory
    out = tmp_path / "run"
    argv = ["run", *TINY, "--rule", "lra", "--rule-opt", "beta=0.2", "--epochs", "1", "--schedule", "constant"]
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    assert bound.count(lra) == 1 and bound.count(mlp) == 1
    bound.clear()
    assert main(["run", "--plugin", "ngf_tiny_data", "--resume", str(out), "--epochs", "2", "--quiet"]) == 0
    assert bound.count(lra) == 1 and bound.count(mlp) == 1  # the stored config.toml is read, not bound
    assert read(out / "config.toml")["rule_opts"]["beta"] == 0.2
    capsys.readouterr()


def test_the_spec_is_immutable_and_its_options_are_typed_and_complete():
    spec = RunSpec.of(ngf.RunConfig(rule="lra", rule_opts={"beta": "0.2"}, model_opts={"widths": "16,8"}), REGISTRY)
    assert spec.bound["rule_opts"]["beta"] == 0.2 and spec.bound["model_opts"]["widths"] == (16, 8)
    assert "bias" in spec.bound["model_opts"]  # every default filled in
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.config = ngf.RunConfig()
    with pytest.raises(TypeError):
        spec.bound["rule_opts"]["beta"] = 0.3


def _stored(config: ngf.RunConfig) -> dict:
    """The ``config.toml`` record of ``config``, read back as a resume reads it."""
    return RunSpec.of(config, REGISTRY).written({"rule": config.rule, "model": config.model,
                                                 "dataset": config.dataset})


def test_a_file_that_lacks_an_option_or_a_field_describes_the_run_at_its_default():
    config = ngf.RunConfig(rule="lra", rule_opts={"beta": 0.2})
    spec = RunSpec.of(config, REGISTRY)
    older = _stored(config)
    del older["model_opts"]["dropout"], older["loss"]  # a file written before the option and the field
    assert list(spec.differences(older, FIELDS_WITH["may_differ_on_resume"])) == []
    changed = {**older, "rule_opts": {**older["rule_opts"], "beta": 0.3}}
    assert list(spec.differences(changed, FIELDS_WITH["may_differ_on_resume"])) == [("rule option beta", 0.3, 0.2)]
    assert list(spec.differences({**older, "lr": 0.1}, ("lr",))) == []  # what the question leaves free
    other_rule = {**older, "rule": "fa", "rule_opts": {}}
    assert next(spec.differences(other_rule, ()))[:2] == ("rule", "fa")


def test_an_experiment_reads_back_a_folder_whose_file_predates_an_option(tmp_path):
    config = ngf.RunConfig(rule="lra", model_opts={"widths": (16,)}, threads=1)
    older = _stored(config)
    del older["model_opts"]["bias"]
    (tmp_path / "config.toml").write_text(dumps({**older, "threads": 2}))  # another --workers: the same run
    assert same_config(Path(tmp_path), config, REGISTRY)
    (tmp_path / "config.toml").write_text(dumps({**older, "model_opts": {"widths": [16], "bias": False}}))
    assert not same_config(Path(tmp_path), config, REGISTRY)


def _growing_model(version: int):
    """A plugin whose model ``grows`` gains the option ``extra`` in ``version`` 2 (default 0: no change)."""
    from ngf.models.mlp import mlp

    def grows_v1(input_shape, n_classes, *, rngs, width: int = 8):
        return mlp(input_shape, n_classes, rngs=rngs, widths=(width,))

    def grows_v2(input_shape, n_classes, *, rngs, width: int = 8, extra: int = 0):
        return mlp(input_shape, n_classes, rngs=rngs, widths=(width + extra,))

    plugin = types.ModuleType(f"grows_v{version}")
    plugin.ngf_register_models = hookimpl(lambda: {"grows": grows_v1 if version == 1 else grows_v2})
    return ngf.load_registry([plugin, "ngf_tiny_data"])


def test_a_run_written_before_its_model_gained_an_option_resumes_and_refuses_the_option_changed(tmp_path):
    out, run = tmp_path / "run", dict(model="grows", dataset="tiny", schedule="constant")
    ngf.run(registry=_growing_model(1), epochs=1, out=str(out), **run)
    assert "extra" not in read(out / "config.toml")["model_opts"]
    summary = ngf.run(registry=_growing_model(2), epochs=2, out=str(out), resume=True, **run)
    assert len(summary["history"]) == 2 and read(out / "config.toml")["model_opts"]["extra"] == 0
    assert len(ngf.run(registry=_growing_model(2), epochs=3, out=str(out), resume=True, **run)["history"]) == 3
    with pytest.raises(ngf.NgfError, match="model option extra was 0 in that run, not 4"):
        ngf.run(registry=_growing_model(2), epochs=4, out=str(out), resume=True, model_opts={"extra": 4}, **run)
