"""``ngf.run``: one call builds a run from names or objects, trains it and returns its summary.

The steps, each in its own module of ``ngf.runs``: validate the config (``config``,
``members.configured``), then train the run as a list of one member (``loop.run_members``,
the loop a stack's members go through too): check the run folder and take its lock
(``folder``), check that a resume's options are the stored run's (``resuming``), resolve
names into objects (``resolve``), write the config file (``configfile``), all in
``members.open_member``, and train (``loop``).
"""

from __future__ import annotations

from pathlib import Path

from ngf.core.errors import Diverged
from ngf.host.registry import Registry
from ngf.runs import loop, threads
from ngf.runs.callbacks import Callbacks
from ngf.runs.compilecache import enable_compile_cache
from ngf.runs.config import RunConfig
from ngf.runs.members import configured, write_error


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
    config = configured(config, registry, callbacks, overrides)
    threads.apply(config.threads)  # XLA's thread pool, before JAX's backend starts
    labels = {"rule": rule_name, "model": model_name, "dataset": dataset_name}
    try:
        [member] = loop.run_members([config], registry, [callbacks], loop.Lone, labels)
    except OSError as exc:
        raise write_error(exc, f"--out {None if config.out is None else Path(config.out)}") from None
    if member.problem is not None:
        raise Diverged(member.problem, member.summary)
    return member.summary
