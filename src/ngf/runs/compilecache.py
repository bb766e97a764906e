"""JAX's persistent compilation cache in ngf's cache folder: a run's programs are compiled once per machine.

``ngf.run`` turns it on before anything is compiled. ``$NGF_COMPILE_CACHE`` chooses:
unset or empty, ``<ngf cache>/jax`` (``$NGF_CACHE_DIR`` or ``~/.cache/ngf``, the folder
that also holds converted datasets); ``0``, ``off`` or ``false``, no persistent cache;
any other value, that folder. Every program is cached, however short its compilation:
a run's step, evaluation and weight initialisation together take seconds to compile,
each only a fraction of one (README.md, Start-up).
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

OFF = ("0", "off", "false", "no")
_enabled: list[str] = []  # the folder set in this process, once


def cache_folder() -> Path | None:
    """The folder ``$NGF_COMPILE_CACHE`` asks for; None when the cache is off."""
    value = os.environ.get("NGF_COMPILE_CACHE", "").strip()
    if value.lower() in OFF:
        return None
    if value:
        return Path(value).expanduser()
    return Path(os.environ.get("NGF_CACHE_DIR") or Path.home() / ".cache" / "ngf") / "jax"


def enable_compile_cache() -> Path | None:
    """Turn on JAX's persistent cache in ``cache_folder()`` (once per process); the folder, or None.

    A folder that cannot be created leaves the cache off: a run never fails for it. A
    process whose JAX cache was set by the user (``jax_compilation_cache_dir``) keeps it.
    """
    if _enabled:
        return Path(_enabled[0])
    folder = cache_folder()
    if folder is None or jax.config.jax_compilation_cache_dir:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # every program, however quick
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    _enabled.append(str(folder))
    return folder
