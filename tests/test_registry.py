"""The plugin host: built-ins through the hooks, entry points, broken and duplicate plugins."""

import importlib.metadata
import sys
import types

import pytest

from ngf import hookimpl
from ngf.host import registry as registry_module
from ngf.core.errors import NgfError
from ngf.host.registry import load_registry
from ngf.plugins.bp import bp


def plugin_module(name, **hooks):
    module = types.ModuleType(name)
    for hook_name, result in hooks.items():
        setattr(module, hook_name, hookimpl(lambda result=result: result))
    sys.modules[name] = module
    return module


def fake_entry_points(monkeypatch, *points):
    eps = [importlib.metadata.EntryPoint(name=n, value=v, group="ngf") for n, v in points]
    monkeypatch.setattr(registry_module.importlib.metadata, "entry_points", lambda group: eps)


def test_builtins_register_through_the_hooks():
    registry = load_registry(autoload=False)
    assert registry.rules["bp"].plugin == "ngf.plugins.bp"
    assert registry.rules["lra"].plugin == "ngf.plugins.lra"
    assert registry.models["mlp"].plugin == "ngf.plugins.models"
    assert {"mnist", "fashion-mnist"} <= set(registry.datasets)
    assert registry.problems == []


def test_entry_point_plugins_load_and_broken_ones_are_named(monkeypatch):
    plugin_module("third_party_rules", ngf_register_rules={"mine": bp})
    fake_entry_points(monkeypatch, ("good", "third_party_rules"), ("broken", "no_such_module_xyz"))
    registry = load_registry()
    assert registry.rules["mine"].plugin == "good"
    assert "lra" in registry.rules  # everything else still works
    assert len(registry.problems) == 1 and "'broken'" in registry.problems[0]


def test_autoload_can_be_disabled(monkeypatch):
    plugin_module("third_party_rules2", ngf_register_rules={"mine2": bp})
    fake_entry_points(monkeypatch, ("good", "third_party_rules2"))
    monkeypatch.setenv("NGF_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert "mine2" not in load_registry().rules


def test_duplicate_names_name_both_plugins():
    plugin_module("dup_plugin", ngf_register_rules={"lra": bp})
    with pytest.raises(NgfError, match="'ngf.plugins.lra' and plugin 'dup_plugin'"):
        load_registry(extra_plugins=["dup_plugin"], autoload=False)


def test_plugin_raising_or_returning_junk_is_reported():
    def explode():
        raise RuntimeError("boom")

    bad = types.ModuleType("raising_plugin")
    bad.ngf_register_models = hookimpl(explode)
    sys.modules["raising_plugin"] = bad
    plugin_module("junk_plugin", ngf_register_rules=["not", "a", "dict"])
    registry = load_registry(extra_plugins=["raising_plugin", "junk_plugin"], autoload=False)
    assert any("'raising_plugin'" in p and "boom" in p for p in registry.problems)
    assert any("'junk_plugin'" in p for p in registry.problems)
    assert "mlp" in registry.models and "bp" in registry.rules


def test_blocked_plugin_is_skipped():
    registry = load_registry(blocked=["ngf.plugins.lra"], autoload=False)
    assert "lra" not in registry.rules and "bp" in registry.rules
