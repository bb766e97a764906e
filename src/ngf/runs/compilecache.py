"""JAX's persistent compilation cache in ngf's cache folder: a run's programs are compiled once per machine.

``ngf.run`` turns it on before anything is compiled. ``$NGF_COMPILE_CACHE`` chooses:
unset or empty, ``<ngf cache>/jax`` (``$NGF_CACHE_DIR`` or ``~/.cache/ngf``, the folder
that also holds converted datasets); ``0``, ``off``, ``false`` or ``no``, no persistent
cache (``ngf run --no-compile-cache`` sets it so); any other value, that folder. Every
program is cached, however short its compilation: a run's step, evaluation and weight
initialisation together take seconds to compile, each only a fraction of one
(README.md, Start-up). The cache is keyed by each program's text, the compiler options
and JAX's version, so two runs that compile the same program share its entry, in one
process or in several.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
from jax.experimental.compilation_cache import compilation_cache

OFF = ("0", "off", "false", "no")
_SETTINGS = {"jax_persistent_cache_min_compile_time_secs": 0.0,  # every program, however quick
             "jax_persistent_cache_min_entry_size_bytes": 0}
_ours: list[str] = []  # the folder this module set in JAX's config, if any


def cache_folder() -> Path | None:
    """The folder ``$NGF_COMPILE_CACHE`` asks for; None when the cache is off."""
    value = os.environ.get("NGF_COMPILE_CACHE", "").strip()
    if value.lower() in OFF:
        return None
    if value:
        return Path(value).expanduser()
    return Path(os.environ.get("NGF_CACHE_DIR") or Path.home() / ".cache" / "ngf") / "jax"


def enable_compile_cache() -> Path | None:
    """Point JAX's persistent cache at ``cache_folder()``, or turn it off; the folder in use, or None.

    Follows ``$NGF_COMPILE_CACHE`` at every call, so a process can turn the cache off
    for a later run. A folder that cannot be created leaves the cache off: a run never
    fails for it. A cache folder set by someone else (``jax_compilation_cache_dir``,
    by the user or a library) is kept as it is, and None returned.
    """
    current = jax.config.jax_compilation_cache_dir
    if current and current not in _ours:
        return None  # not ours to change
    folder = cache_folder()
    if folder is not None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            folder = None
    wanted = str(folder) if folder is not None else None
    if wanted != current:
        _switch(wanted)
    return folder


def _switch(folder: str | None) -> None:
    """Make ``folder`` JAX's persistent cache (None: none), dropping the cache object JAX holds."""
    if folder is not None:
        for name, value in _SETTINGS.items():
            jax.config.update(name, value)
    jax.config.update("jax_compilation_cache_dir", folder)
    compilation_cache.reset_cache()  # JAX opens its cache folder once; the next compilation opens this one
    _ours[:] = [folder] if folder is not None else []
