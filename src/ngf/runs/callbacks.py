"""Watching a run: the caller's ``Callbacks``, and the plugins' lifecycle hooks beside them.

Plugins that watch runs hear when a run starts, an epoch ends and a run ends.

ngf calls each plugin's implementation itself rather than through pluggy's caller, so
that one plugin raising cannot stop the others or the run: it is reported once, by
name, on one line, and not called again in that run. Hooks see the run's config
through a read-only ``ConfigView``: a hook that assigns to it fails (and is reported)
instead of changing a run whose ``config.toml`` is already written.
"""

from __future__ import annotations

import types
import warnings
from typing import Callable

from ngf.host.registry import PLUGIN_FAILURES, failure_text, one_line


class Callbacks:
    """Hooks a caller may override to watch a run; all do nothing by default."""

    def on_start(self, info: dict) -> None:
        """Called once the data, model and rule are ready."""

    def on_progress(self, done: int, total: int) -> None:
        """Called as the steps of an epoch complete (only if ``wants_progress``)."""

    def on_epoch(self, record: dict) -> None:
        """Called with each epoch's metrics."""

    def on_end(self, summary: dict) -> None:
        """Called with the summary once the run has finished."""

    def on_problem(self, message: str) -> None:
        """Called with a one-line message when a plugin fails during the run."""
        warnings.warn(message, RuntimeWarning, stacklevel=2)

    wants_progress = False


class ConfigView:
    """A read-only view of a ``RunConfig``: its fields read through, dicts as read-only mappings."""

    __slots__ = ("_config",)

    def __init__(self, config):
        object.__setattr__(self, "_config", config)

    def __getattr__(self, name: str):
        value = getattr(object.__getattribute__(self, "_config"), name)
        return types.MappingProxyType(value) if isinstance(value, dict) else value

    def __setattr__(self, name: str, value) -> None:
        raise AttributeError(f"the run's config is read-only (cannot set {name})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"the run's config is read-only (cannot delete {name})")

    def __repr__(self) -> str:
        return f"ConfigView({object.__getattribute__(self, '_config')!r})"


class LifecycleHooks:
    """Calls one lifecycle hook of every plugin in turn, dropping plugins that raise."""

    def __init__(self, manager, report: Callable[[str], None]):
        self.manager, self.report, self.failed = manager, report, set()

    def call(self, hook_name: str, **kwargs) -> None:
        """Call ``hook_name`` on every plugin that implements it, with the arguments it takes."""
        if self.manager is None:
            return
        for impl in getattr(self.manager.hook, hook_name).get_hookimpls():  # registration order
            if impl.plugin_name in self.failed:
                continue
            try:
                impl.function(*(kwargs[name] for name in impl.argnames))
            except PLUGIN_FAILURES as exc:  # a broken observer, or one calling sys.exit(), must not end the run
                self.failed.add(impl.plugin_name)
                self.report(one_line(f"plugin {impl.plugin_name!r} failed in {hook_name}: "
                                     f"{failure_text(exc)} (not called again in this run)"))


class WithHooks:
    """A run's ``Callbacks`` that also call the plugins' lifecycle hooks after each event."""

    def __init__(self, callbacks, manager, config):
        self.callbacks, self.config = callbacks, ConfigView(config)
        self.hooks = LifecycleHooks(manager, callbacks.on_problem)
        self.wants_progress = callbacks.wants_progress

    def on_start(self, info: dict) -> None:
        """The caller's ``on_start``, then every plugin's ``ngf_run_start``."""
        self.callbacks.on_start(info)
        self.hooks.call("ngf_run_start", config=self.config, info=dict(info))

    def on_progress(self, done: int, total: int) -> None:
        """The caller's ``on_progress`` (plugins do not see steps)."""
        self.callbacks.on_progress(done, total)

    def on_epoch(self, record: dict) -> None:
        """The caller's ``on_epoch``, then every plugin's ``ngf_epoch_end``."""
        self.callbacks.on_epoch(record)
        self.hooks.call("ngf_epoch_end", config=self.config, epoch=record["epoch"], record=dict(record))

    def on_end(self, summary: dict) -> None:
        """The caller's ``on_end``, then every plugin's ``ngf_run_end``.

        ``summary.json`` is written by then: an interruption here carries the summary (its
        status stays what it was, ``completed`` or ``diverged``).
        """
        try:
            self.callbacks.on_end(summary)
            self.hooks.call("ngf_run_end", config=self.config, summary=dict(summary))
        except KeyboardInterrupt as exc:
            exc.summary = getattr(exc, "summary", None) or summary
            raise

    def on_problem(self, message: str) -> None:
        """Pass a problem on to the caller's ``on_problem``."""
        self.callbacks.on_problem(message)
