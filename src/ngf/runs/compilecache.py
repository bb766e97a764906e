"""JAX's persistent compilation cache in ngf's cache folder: a run's programs are compiled once per machine.

``ngf.run`` turns it on before anything is compiled. ``$NGF_COMPILE_CACHE`` chooses:
unset or empty, ``<ngf cache>/jax`` (``$NGF_CACHE_DIR`` or ``~/.cache/ngf``, the folder
that also holds converted datasets); ``0``, ``off``, ``false`` or ``no``, no persistent
cache (``ngf run --no-compile-cache`` sets it so); any other value, that folder. Every
program is cached, however short its compilation: a run's step, evaluation and weight
initialisation together take seconds to compile, each only a fraction of one
(README.md, Start-up). The cache is keyed by each program's text, the compiler options
and JAX's version, so two runs that compile the same program share its entry, in one
process or in several. An entry that cannot be read back (a damaged file) is dropped and its
program compiled again, with one line said once per process, instead of JAX's warning at
every later run (``drop_damaged_entries``).
"""

from __future__ import annotations

import os
from pathlib import Path

import sys

import jax
from jax._src import compilation_cache as cache_internals
from jax.experimental.compilation_cache import compilation_cache

OFF = ("0", "off", "false", "no")
_SETTINGS = {"jax_persistent_cache_min_compile_time_secs": 0.0,  # every program, however quick
             "jax_persistent_cache_min_entry_size_bytes": 0}
_ours: list[str] = []  # the folder this module set in JAX's config, if any
ENTRY_SUFFIXES = ("-cache", "-atime")  # an entry's files in JAX's cache folder (jax._src.lru_cache)
_dropped: list[str] = []  # the damaged entries this process dropped


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


def drop_damaged_entries(read=None):
    """Wrap JAX's read of a cache entry so that one it cannot read (a damaged file) is removed and taken as
    a miss: the program is compiled once more and its entry written afresh, and one line says so, once
    per process (JAX itself warns, and keeps the entry, at every later run)."""
    read = read or cache_internals.get_executable_and_time
    if getattr(read, "drops_damaged", False):
        return read

    def get_executable_and_time(cache_key, *args, **kwargs):
        try:
            return read(cache_key, *args, **kwargs)
        except Exception:  # noqa: BLE001 - a damaged entry: zlib, zstd or XLA's own error
            folder = jax.config.jax_compilation_cache_dir
            for suffix in ENTRY_SUFFIXES:
                Path(folder, f"{cache_key}{suffix}").unlink(missing_ok=True)
            if not _dropped:
                print(f"note: dropped a damaged entry of the compile cache in {folder}; its program is "
                      "compiled again", file=sys.stderr)
            _dropped.append(cache_key)
            return None, None

    get_executable_and_time.drops_damaged = True
    cache_internals.get_executable_and_time = get_executable_and_time
    return get_executable_and_time


def _switch(folder: str | None) -> None:
    """Make ``folder`` JAX's persistent cache (None: none), dropping the cache object JAX holds."""
    if folder is not None:
        for name, value in _SETTINGS.items():
            jax.config.update(name, value)
        drop_damaged_entries()
    jax.config.update("jax_compilation_cache_dir", folder)
    compilation_cache.reset_cache()  # JAX opens its cache folder once; the next compilation opens this one
    _ours[:] = [folder] if folder is not None else []
