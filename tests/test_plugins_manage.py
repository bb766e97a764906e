"""Plugin management: `ngf plugins`, --plugin, blocking, autoload, and broken plugins on one line."""

import importlib.metadata
import types

import pytest

import ngf
from ngf import hookimpl
from ngf.cli import build_parser, main
from ngf.host import registry as registry_module
from ngf.host.registry import load_registry
from ngf.plugins.bp import bp


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    """Tables wide enough that no name folds across lines."""
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A folder on sys.path for plugin modules that are not installed."""
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def write_plugin(folder, name, body):
    (folder / f"{name}.py").write_text("import ngf\nfrom ngf.plugins.bp import bp\n" + body)


RULE_PLUGIN = '__version__ = "2.5"\n@ngf.hookimpl\ndef ngf_register_rules():\n    return {"%s": bp}\n'


def fake_entry_points(monkeypatch, *points):
    eps = [importlib.metadata.EntryPoint(name=n, value=v, group="ngf") for n, v in points]
    monkeypatch.setattr(registry_module.importlib.metadata, "entry_points", lambda group: eps)


def test_plugins_lists_versions_and_what_each_registers(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "ngf.plugins.lra" in out and ngf.__version__ in out and "rule lra" in out
    assert "ngf.plugins.csv_logger" in out and "hook ngf_epoch_end" in out


def test_installed_plugin_shows_its_distribution_version():
    registry = load_registry()
    for ep in importlib.metadata.entry_points(group="ngf"):
        info = registry.plugins[ep.name]
        assert info.version == ep.dist.version and ep.dist.name in info.source


def test_plugin_option_loads_a_module_that_is_not_installed(plugin_dir, capsys):
    write_plugin(plugin_dir, "local_rules_a", RULE_PLUGIN % "mine-a")
    write_plugin(plugin_dir, "local_rules_b", RULE_PLUGIN % "mine-b")
    assert main(["--plugin", "local_rules_a", "plugins", "--plugin", "local_rules_b"]) == 0
    out = capsys.readouterr().out
    assert "rule mine-a" in out and "rule mine-b" in out and "2.5" in out and "--plugin" in out


def test_run_takes_plugin_options_too():
    args = build_parser().parse_args(["--plugin", "a", "run", "--plugin", "b", "--block-plugin", "c"])
    assert args.global_plugin + args.plugin == ["a", "b"] and args.block_plugin == ["c"]


def test_block_by_option_or_environment(monkeypatch, capsys):
    monkeypatch.setenv("NGF_BLOCK_PLUGINS", "ngf.plugins.fa, ngf.plugins.dfa")
    assert main(["--block-plugin", "ngf.plugins.dtp", "rules"]) == 0
    out = capsys.readouterr().out
    assert "lra" in out and not {"ngf.plugins.fa", "ngf.plugins.dfa", "ngf.plugins.dtp"} & set(out.split())
    registry = load_registry()
    assert registry.plugins["ngf.plugins.fa"].status == "blocked" and "fa" not in registry.rules


def test_block_an_installed_plugin_by_entry_point_or_distribution(monkeypatch):
    for ep in importlib.metadata.entry_points(group="ngf"):
        for name in (ep.name, ep.dist.name):
            registry = load_registry(blocked=[name])
            assert registry.plugins[ep.name].status == "blocked"
            assert not any(e.plugin == ep.name for e in registry.rules.values())


def test_autoload_off_skips_installed_plugins(monkeypatch, plugin_dir):
    write_plugin(plugin_dir, "autoloaded_rules", RULE_PLUGIN % "auto")
    fake_entry_points(monkeypatch, ("auto", "autoloaded_rules"))
    assert "auto" in load_registry().rules
    monkeypatch.setenv("NGF_DISABLE_PLUGIN_AUTOLOAD", "1")
    registry = load_registry(extra_plugins=["autoloaded_rules"])  # --plugin still loads it
    assert "auto" not in registry.plugins and registry.rules["auto"].plugin == "autoloaded_rules"


def test_broken_plugins_are_one_line_each_and_the_rest_works(monkeypatch, plugin_dir, capsys):
    write_plugin(plugin_dir, "import_broken", 'raise ImportError("needs\\nlibfoo")\n')
    write_plugin(plugin_dir, "hook_raises", "@ngf.hookimpl\ndef ngf_register_models():\n    raise KeyError('x')\n")
    write_plugin(plugin_dir, "hook_junk", "@ngf.hookimpl\ndef ngf_register_datasets():\n    return {1: [2]}\n")
    fake_entry_points(monkeypatch, ("import-broken", "import_broken"), ("hook-raises", "hook_raises"),
                      ("hook-junk", "hook_junk"))
    assert main(["rules"]) == 0
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("warning: plugin '") for line in lines)
    for name, reason in (("import-broken", "ImportError: needs libfoo"), ("hook-raises", "KeyError"),
                         ("hook-junk", "must return a dict of name -> factory")):
        assert any(f"'{name}'" in line and reason in line for line in lines), (name, lines)
    assert "lra" in captured.out


def test_a_factory_that_returns_junk_is_named(capsys):
    junk = types.SimpleNamespace(__name__="junk_rules",
                                 ngf_register_rules=hookimpl(lambda: {"junk": lambda: 42}))
    registry = load_registry(extra_plugins=[junk], autoload=False)
    with pytest.raises(ngf.NgfError, match="rule 'junk' of plugin 'junk_rules' returned a value of type int, not a LearningRule"):
        ngf.run(rule="junk", registry=registry)


def test_a_factory_that_raises_is_named():
    def broken_rule(beta: float = 1.0):
        raise ZeroDivisionError("no")

    plugin = types.SimpleNamespace(__name__="raising_rules",
                                   ngf_register_rules=hookimpl(lambda: {"oops": broken_rule}))
    registry = load_registry(extra_plugins=[plugin], autoload=False)
    with pytest.raises(ngf.NgfError, match="rule 'oops' of plugin 'raising_rules' failed: ZeroDivisionError: no"):
        ngf.run(rule="oops", registry=registry)


def test_duplicates_are_an_error_naming_both(plugin_dir, capsys):
    write_plugin(plugin_dir, "second_bp", RULE_PLUGIN % "bp")
    assert main(["--plugin", "second_bp", "rules"]) == 2
    assert "'ngf.plugins.bp' and plugin 'second_bp'" in capsys.readouterr().out
