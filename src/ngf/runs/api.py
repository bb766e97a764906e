"""``ngf.run``: one call builds a run from names or objects, trains it and returns its summary.

The steps, each in its own module of ``ngf.runs``: validate the config (``config``),
check the run folder (``folder``), resolve names into objects (``resolve``), write the
config file (``configfile``) and train (``loop``).
"""

from __future__ import annotations

import dataclasses
import functools

from ngf.core.errors import Diverged, NgfError
from ngf.host.registry import Registry, load_registry
from ngf.runs import configfile, folder, loop
from ngf.runs.callbacks import Callbacks, WithHooks
from ngf.runs.config import RunConfig
from ngf.runs.resolve import resolve


def run(config: RunConfig | None = None, *, registry: Registry | None = None,
        callbacks: Callbacks | None = None, **overrides) -> dict:
    """Train and evaluate; return the summary that ``ngf run`` writes to ``summary.json``.

    Keyword ``overrides`` replace fields of ``config`` (e.g. ``epochs=3``). ``rule``,
    ``model`` and ``dataset`` are registered names, or objects: a ``LearningRule``,
    an NNX module or a factory ``(input_shape, n_classes, *, rngs) -> module``, and
    a ``DataSplits``.

    Bad input raises ``NgfError`` before anything is written (an ``out`` folder this
    call created is removed again if the run fails before its first epoch). A run that
    diverges raises ``Diverged`` (an ``NgfError``, exit status 3) carrying its summary
    (``"status": "diverged"``). ``KeyboardInterrupt`` (and ``Terminated``, the CLI's
    SIGTERM) propagates after ``summary.json`` is written with ``"status": "interrupted"``;
    the exception's ``summary`` attribute holds it. A finished run's summary says
    ``"status": "completed"``.
    """
    config = _configured(config, overrides)
    folder.check(config)
    registry = registry or load_registry()
    callbacks = WithHooks(callbacks or Callbacks(), registry.manager, config)
    resolved = resolve(config, registry)
    record = configfile.resolved(config, registry, resolved.names) if config.out is not None else None
    out, created = folder.prepare(config)
    write_config = functools.partial(configfile.write, out, config, registry, resolved.names, record)
    try:
        try:
            if not config.resume:  # a resumed run rewrites it once its checkpoint has been read
                write_config()
            return loop.train(config, resolved, out, callbacks, write_config)
        except OSError as exc:
            where = f" {exc.filename}" if exc.filename else ""
            raise NgfError(f"cannot write to --out {out}:{where} {exc.strerror or exc}") from None
    except (KeyboardInterrupt, Diverged):
        raise
    except BaseException:
        folder.discard(out, created, config)
        raise


def _configured(config: RunConfig | None, overrides: dict) -> RunConfig:
    """``config`` (or the defaults) with ``overrides`` applied, validated."""
    fields = [f.name for f in dataclasses.fields(RunConfig)]
    for name in overrides:
        if name not in fields:
            raise NgfError(f"unknown run option {name!r}; valid options: {', '.join(fields)}")
    config = dataclasses.replace(config or RunConfig(), **overrides)
    config.validate()
    return config
