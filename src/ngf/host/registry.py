"""The plugin host: collects rules, models and datasets from every plugin via pluggy."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import os
import sys
from typing import Callable

import pluggy

from ngf.core.errors import NgfError, unknown_name
from ngf.host import hookspecs

ENTRY_POINT_GROUP = "ngf"
DISABLE_AUTOLOAD_ENV = "NGF_DISABLE_PLUGIN_AUTOLOAD"
BLOCK_ENV = "NGF_BLOCK_PLUGINS"
KINDS = ("rule", "model", "dataset")
REGISTER_HOOKS = {"rule": "ngf_register_rules", "model": "ngf_register_models",
                  "dataset": "ngf_register_datasets"}
UNSELECTABLE = (",", ":")  # marks that split a name where commands read one
PLUGIN_FAILURES = (Exception, SystemExit)  # a plugin's sys.exit() is its own failure, not ngf's exit status


@dataclasses.dataclass(frozen=True)
class Entry:
    """One registered factory and the plugin that registered it."""

    name: str
    factory: Callable
    plugin: str
    kind: str = "factory"

    def build(self, expected: type, *args, **kwargs):
        """Call the factory; a failure or a result that is not ``expected`` names the plugin.

        An ``NgfError`` (bad input the factory already explains) passes through as it is.
        """
        try:
            built = self.factory(*args, **kwargs)
        except NgfError:
            raise
        except PLUGIN_FAILURES as exc:
            raise NgfError(one_line(f"{self.kind} {self.name!r} of plugin {self.plugin!r} failed: "
                                    f"{failure_text(exc)}")) from exc
        if not isinstance(built, expected):
            raise NgfError(f"{self.kind} {self.name!r} of plugin {self.plugin!r} returned a value of "
                           f"type {type(built).__name__}, not a {expected.__name__}")
        return built


@dataclasses.dataclass(frozen=True)
class PluginInfo:
    """A plugin the host met: its version, where it came from, and what became of it."""

    name: str
    version: str
    source: str  # "built-in", "entry point of <distribution>", "--plugin", "object"
    status: str = "loaded"  # or "blocked", "failed to load", "failed in <hook>"


@dataclasses.dataclass
class Registry:
    """Everything the loaded plugins registered, plus the problems met on the way."""

    rules: dict[str, Entry] = dataclasses.field(default_factory=dict)
    models: dict[str, Entry] = dataclasses.field(default_factory=dict)
    datasets: dict[str, Entry] = dataclasses.field(default_factory=dict)
    problems: list[str] = dataclasses.field(default_factory=list)
    plugins: dict[str, PluginInfo] = dataclasses.field(default_factory=dict)
    manager: pluggy.PluginManager | None = None  # calls the lifecycle hooks of a run
    withheld: dict[tuple[str, str], str] = dataclasses.field(default_factory=dict)  # (kind, name) -> blocked plugin

    def table(self, kind: str) -> dict[str, Entry]:
        """The table for ``kind`` ("rule", "model" or "dataset")."""
        return {"rule": self.rules, "model": self.models, "dataset": self.datasets}[kind]

    def get(self, kind: str, name: str) -> Entry:
        """Look a name up, or raise an error listing the valid names."""
        table = self.table(kind)
        if name not in table:
            raise self._unknown(kind, name)
        return table[name]

    def _unknown(self, kind: str, name: str) -> NgfError:
        """The unknown-name error, saying which blocked plugin provides the name (or may)."""
        error = unknown_name(kind, name, self.table(kind))
        if (kind, name) in self.withheld:
            return NgfError(f"{error}; plugin {self.withheld[kind, name]!r}, which provides it, is blocked "
                            f"(--block-plugin or ${BLOCK_ENV})")
        known = set(self.withheld.values())
        maybe = [n for n, info in self.plugins.items() if info.status == "blocked" and n not in known]
        if maybe:
            return NgfError(f"{error}; blocked plugins, which may provide it: {', '.join(maybe)}")
        return error

    def provided_by(self, plugin: str) -> list[str]:
        """What ``plugin`` contributes: ``"rule usf"``, ``"hook ngf_epoch_end"``, ..."""
        found = [f"{kind} {name}" for kind in KINDS
                 for name, entry in sorted(self.table(kind).items()) if entry.plugin == plugin]
        obj = self.manager.get_plugin(plugin) if self.manager else None
        if obj is not None:
            found += sorted(f"hook {caller.name}" for caller in self.manager.get_hookcallers(obj)
                            if caller.name not in REGISTER_HOOKS.values())
        return found


def _new_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    return manager


def one_line(text: str) -> str:
    """Collapse whitespace so that a message prints on one line."""
    return " ".join(str(text).split())


def failure_text(exc: BaseException) -> str:
    """What a plugin's exception says: ``"ValueError: bad"``, or ``"it called sys.exit(3)"``."""
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r})"
    return f"{type(exc).__name__}: {exc}"


def _failure(registry: Registry, name: str, what: str, exc: BaseException) -> None:
    registry.problems.append(one_line(f"plugin {name!r} {what}: {failure_text(exc)}"))


def _mark(registry: Registry, name: str, status: str) -> None:
    if name in registry.plugins:
        registry.plugins[name] = dataclasses.replace(registry.plugins[name], status=status)


def _own_version(plugin) -> str | None:
    """A plugin module's ``__version__``, or its top-level package's."""
    top = sys.modules.get(getattr(plugin, "__name__", "").partition(".")[0])
    return getattr(plugin, "__version__", None) or getattr(top, "__version__", None)


def _add(manager, registry: Registry, name: str, load: Callable, version: str | None, source: str,
         blocked: bool) -> None:
    """Register the plugin ``load()`` returns under ``name``; a failure is recorded by name."""
    if blocked:
        registry.plugins[name] = PluginInfo(name, version or "unknown", source, "blocked")
        return
    try:
        plugin = load()
        if manager.is_registered(plugin):  # already loaded under another name
            return
        manager.register(plugin, name=name)
    except PLUGIN_FAILURES as exc:  # a broken plugin must not take the others down
        registry.plugins[name] = PluginInfo(name, version or "unknown", source, "failed to load")
        _failure(registry, name, "failed to load", exc)
        return
    registry.plugins[name] = PluginInfo(name, str(version or _own_version(plugin) or "unknown"), source)


def _load_entry_points(manager, registry: Registry, blocked: set[str]) -> None:
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if manager.has_plugin(ep.name):
            continue
        dist = ep.dist  # None for entry points made by hand
        version, source = (dist.version, f"entry point of {dist.name}") if dist else (None, "entry point")
        is_blocked = ep.name in blocked or (dist is not None and dist.name in blocked)
        _add(manager, registry, ep.name, ep.load, version, source, is_blocked)


def _checked(found, hook_name: str) -> dict:
    """``found`` if it is a dict of name -> factory; otherwise a TypeError saying what it is."""
    if not isinstance(found, dict) or not all(isinstance(n, str) and callable(f) for n, f in found.items()):
        raise TypeError(f"{hook_name}() must return a dict of name -> factory, got {found!r:.80}")
    return found


def _check_name(kind: str, name: str, plugin: str) -> None:
    """Refuse a name no command could select: empty, or holding ',' (lists such as --rules a,b split
    there) or ':' (forms such as hf:NAME and --log NAME:ARG split there)."""
    if not name.strip() or name != name.strip() or any(mark in name for mark in UNSELECTABLE):
        raise NgfError(f"plugin {plugin!r} registers the {kind} name {name!r}, which no command can select "
                       f"(a name is not empty and holds no space at its ends, no ',' and no ':'); rename it in the "
                       f"plugin, or block the plugin (--block-plugin {plugin})")


def _collect(manager, registry: Registry) -> None:
    for kind, hook_name in REGISTER_HOOKS.items():
        table = registry.table(kind)
        for impl in getattr(manager.hook, hook_name).get_hookimpls():  # registration order
            try:
                found = _checked(impl.function(), hook_name)
            except PLUGIN_FAILURES as exc:
                _failure(registry, impl.plugin_name, f"failed in {hook_name}", exc)
                _mark(registry, impl.plugin_name, f"failed in {hook_name}")
                continue
            for name, factory in found.items():
                _check_name(kind, name, impl.plugin_name)
                if name in table:
                    raise NgfError(
                        f"{kind} {name!r} is registered by both plugin {table[name].plugin!r} "
                        f"and plugin {impl.plugin_name!r}; uninstall or block one of them"
                    )
                table[name] = Entry(name, factory, impl.plugin_name, kind)


def blocked_names(blocked=()) -> set[str]:
    """``blocked`` plus the comma-separated names in ``$NGF_BLOCK_PLUGINS``."""
    from_env = os.environ.get(BLOCK_ENV, "").split(",")
    return set(blocked) | {name.strip() for name in from_env if name.strip()}


def _withhold(registry: Registry, module_name: str) -> None:
    """Note what a blocked built-in plugin registers (ngf's own code, safe to import), so that asking
    for one of its names says the plugin is blocked rather than that the name is unknown."""
    module = importlib.import_module(module_name)
    for kind, hook_name in REGISTER_HOOKS.items():
        hook = getattr(module, hook_name, None)
        for name in (hook() if callable(hook) else {}):
            registry.withheld[kind, name] = module_name


def _module_loader(module_name: str) -> Callable:
    return lambda: importlib.import_module(module_name)


def _builtin_loader(module_name: str) -> Callable:
    """A built-in plugin: the instance its module offers as ``PLUGIN`` (a logger, whose hooks are methods),
    else the module."""

    def load():
        module = importlib.import_module(module_name)
        return getattr(module, "PLUGIN", module)

    return load


def load_registry(extra_plugins=(), blocked=(), autoload: bool | None = None) -> Registry:
    """Load the built-in plugins, installed entry points and ``extra_plugins``.

    ``extra_plugins`` are module paths or plugin objects (modules, instances) to
    register too; ``blocked`` names plugins to skip (so does ``$NGF_BLOCK_PLUGINS``,
    comma-separated; an installed plugin may be named by its entry point or its
    distribution); ``autoload`` (default: on unless $NGF_DISABLE_PLUGIN_AUTOLOAD is
    set) controls installed packages.
    """
    from ngf.plugins import BUILTIN_PLUGINS
    from ngf.version import __version__

    manager, blocked = _new_manager(), blocked_names(blocked)
    registry = Registry(manager=manager)
    for module_name in BUILTIN_PLUGINS:
        _add(manager, registry, module_name, _builtin_loader(module_name), __version__, "built-in",
             module_name in blocked)
        if module_name in blocked:
            _withhold(registry, module_name)
    if autoload is None:
        autoload = not os.environ.get(DISABLE_AUTOLOAD_ENV)
    if autoload:
        _load_entry_points(manager, registry, blocked)
    for plugin in extra_plugins:
        if isinstance(plugin, str):
            _add(manager, registry, plugin, _module_loader(plugin), None, "--plugin", plugin in blocked)
        else:
            name = getattr(plugin, "__name__", None) or repr(plugin)
            _add(manager, registry, name, lambda p=plugin: p, None, "object", name in blocked)
    _collect(manager, registry)
    return registry
