"""``ngf.run``: one call builds a run from names or objects, trains it and returns its summary.

The steps, each in its own module of ``ngf.runs``: validate the config (``config``),
check the run folder and take its lock (``folder``), check that a resume's options are
the stored run's (``resuming``), resolve names into objects (``resolve``), write the
config file (``configfile``) and train (``loop``).
"""

from __future__ import annotations

import dataclasses
import functools

from ngf.core.errors import Diverged, NgfError
from ngf.core.parallel import DataParallel, device_count
from ngf.host.registry import Registry, load_registry
from ngf.runs import configfile, folder, identity, loop, resuming, threads
from ngf.runs.callbacks import Callbacks, WithHooks
from ngf.runs.compilecache import enable_compile_cache
from ngf.runs.config import RunConfig
from ngf.runs.arguments import check_arguments, plain_numbers
from ngf.runs.resolve import resolve
from ngf.runs.writable import check_writable_file


def run(config: RunConfig | None = None, *, registry: Registry | None = None,
        callbacks: Callbacks | None = None, rule_name: str | None = None, model_name: str | None = None,
        dataset_name: str | None = None, **overrides) -> dict:
    """Train and evaluate; return the summary that ``ngf run`` writes to ``summary.json``.

    Keyword ``overrides`` replace fields of ``config`` (e.g. ``epochs=3``). ``rule``,
    ``model`` and ``dataset`` are registered names, or objects: a ``LearningRule``,
    an NNX module or a factory ``(input_shape, n_classes, *, rngs) -> module``, and
    a ``DataSplits``. ``rule_name``, ``model_name`` and ``dataset_name`` name such
    objects in the summary and the files (by default a rule's own ``name``, a module's
    class name, a factory's function name, else ``custom``).

    Bad input raises ``NgfError`` before anything is written (an ``out`` folder this
    call created is removed again if the run fails before its first epoch). A run that
    diverges raises ``Diverged`` (an ``NgfError``, exit status 3) carrying its summary
    (``"status": "diverged"``). ``KeyboardInterrupt`` (and ``Terminated``, the CLI's
    SIGTERM) propagates after ``summary.json`` is written with ``"status": "interrupted"``;
    the exception's ``summary`` attribute holds it. A finished run's summary says
    ``"status": "completed"``.

    Compiled programs are kept in JAX's persistent cache, in ngf's cache folder unless
    ``$NGF_COMPILE_CACHE`` names another or is ``off`` (``ngf.runs.compilecache``).
    """
    enable_compile_cache()  # before anything is compiled
    check_arguments(config, registry, callbacks)
    config = _configured(config, overrides)
    threads.apply(config.threads)  # XLA's thread pool, before JAX's backend starts
    folder.check(config)
    if config.log_csv is not None:  # like --out, before any work
        check_writable_file(config.log_csv, "--log-csv")
    place = folder.prepare(config)  # the folder's lock: one writer, taken before the plugins and data load
    failed, out = True, place.out
    try:
        registry = registry or load_registry()
        if config.resume:  # before the data are loaded: the options must be the stored run's
            resuming.check_same_run(config, registry)
        callbacks = WithHooks(callbacks or Callbacks(), registry.manager, config)
        resolved = resolve(config, registry, {"rule": rule_name, "model": model_name, "dataset": dataset_name})
        _check_devices(config)  # every input is checked before any of the run's files is written
        place.identity = identity.of_run(resuming.comparable(config, registry), resolved.data,
                                         resolved.names["dataset"])
        record = configfile.resolved(config, registry, resolved.names) if out is not None else None
        place.write_config = functools.partial(configfile.write, out, config, registry, resolved.names, record)
        if not (config.resume or place.replaces):  # a resumed run rewrites it once its checkpoint is read
            place.claim()
        summary = loop.train(config, resolved, place, callbacks)
        failed = False
        return summary
    except (KeyboardInterrupt, Diverged):
        failed = not place.claimed  # stopped before its first file: no folder is left behind
        raise
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        raise NgfError(f"cannot write to --out {out}:{where} {exc.strerror or exc}") from None
    finally:  # the lock goes last, after any cleaning of what this run wrote
        place.close(failed)


def _check_devices(config: RunConfig) -> None:
    """Refuse a device count, or a batch that does not split across the devices, before the folder is touched."""
    n_devices = device_count(config.devices)
    if n_devices > 1:
        DataParallel.over(n_devices).check_batch(config.batch_size)


def _configured(config: RunConfig | None, overrides: dict) -> RunConfig:
    """``config`` (or the defaults) with ``overrides`` applied, validated."""
    fields = [f.name for f in dataclasses.fields(RunConfig)]
    for name in overrides:
        if name not in fields:
            raise NgfError(f"unknown run option {name!r}; valid options: {', '.join(fields)}")
    config = plain_numbers(dataclasses.replace(config or RunConfig(), **overrides))
    config.validate()
    return config
