"""The plugin host: collects rules, models and datasets from every plugin via pluggy."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import os
from typing import Callable

import pluggy

from ngf.core import hookspecs
from ngf.core.errors import NgfError, unknown_name

ENTRY_POINT_GROUP = "ngf"
DISABLE_AUTOLOAD_ENV = "NGF_DISABLE_PLUGIN_AUTOLOAD"
KINDS = ("rule", "model", "dataset")


@dataclasses.dataclass(frozen=True)
class Entry:
    """One registered factory and the plugin that registered it."""

    name: str
    factory: Callable
    plugin: str


@dataclasses.dataclass
class Registry:
    """Everything the loaded plugins registered, plus the problems met on the way."""

    rules: dict[str, Entry] = dataclasses.field(default_factory=dict)
    models: dict[str, Entry] = dataclasses.field(default_factory=dict)
    datasets: dict[str, Entry] = dataclasses.field(default_factory=dict)
    problems: list[str] = dataclasses.field(default_factory=list)
    plugins: list[str] = dataclasses.field(default_factory=list)

    def table(self, kind: str) -> dict[str, Entry]:
        """The table for ``kind`` ("rule", "model" or "dataset")."""
        return {"rule": self.rules, "model": self.models, "dataset": self.datasets}[kind]

    def get(self, kind: str, name: str) -> Entry:
        """Look a name up, or raise an error listing the valid names."""
        table = self.table(kind)
        if name not in table:
            raise unknown_name(kind, name, table)
        return table[name]


def _new_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    return manager


def _register_module(manager, registry: Registry, module_name: str, plugin_name: str) -> None:
    try:
        module = importlib.import_module(module_name)
        manager.register(module, name=plugin_name)
    except Exception as exc:  # a broken plugin must not take the others down
        registry.problems.append(f"plugin {plugin_name!r} failed to load: {type(exc).__name__}: {exc}")


def _load_entry_points(manager, registry: Registry, blocked: set[str]) -> None:
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in blocked or manager.has_plugin(ep.name):
            continue
        try:
            manager.register(ep.load(), name=ep.name)
        except Exception as exc:
            registry.problems.append(f"plugin {ep.name!r} failed to load: {type(exc).__name__}: {exc}")


def _collect(manager, registry: Registry) -> None:
    hooks = {"rule": manager.hook.ngf_register_rules, "model": manager.hook.ngf_register_models,
             "dataset": manager.hook.ngf_register_datasets}
    for kind, hook in hooks.items():
        table = registry.table(kind)
        for impl in hook.get_hookimpls():  # registration order
            try:
                found = impl.function()
                if not isinstance(found, dict) or not all(callable(f) for f in found.values()):
                    raise TypeError(f"{hook.name}() must return a dict of name -> factory")
            except Exception as exc:
                registry.problems.append(f"plugin {impl.plugin_name!r} failed in {hook.name}: {exc}")
                continue
            for name, factory in found.items():
                if name in table:
                    raise NgfError(
                        f"{kind} {name!r} is registered by both plugin {table[name].plugin!r} "
                        f"and plugin {impl.plugin_name!r}; uninstall or block one of them"
                    )
                table[name] = Entry(name, factory, impl.plugin_name)


def load_registry(extra_plugins=(), blocked=(), autoload: bool | None = None) -> Registry:
    """Load the built-in plugins, installed entry points and ``extra_plugins``.

    ``extra_plugins`` are module paths or plugin objects (modules, instances) to
    register too; ``blocked`` names plugins to skip; ``autoload`` (default: on
    unless $NGF_DISABLE_PLUGIN_AUTOLOAD is set) controls installed packages.
    """
    from ngf.plugins import BUILTIN_PLUGINS

    manager, registry, blocked = _new_manager(), Registry(), set(blocked)
    for module_name in BUILTIN_PLUGINS:
        if module_name not in blocked:
            _register_module(manager, registry, module_name, module_name)
    if autoload is None:
        autoload = not os.environ.get(DISABLE_AUTOLOAD_ENV)
    if autoload:
        _load_entry_points(manager, registry, blocked)
    for plugin in extra_plugins:
        if isinstance(plugin, str):
            _register_module(manager, registry, plugin, plugin)
        else:
            manager.register(plugin, name=getattr(plugin, "__name__", None) or repr(plugin))
    _collect(manager, registry)
    registry.plugins = [name for name, _ in manager.list_name_plugin()]
    return registry
