"""Every hook an ngf plugin can implement (docs/plugins.md documents each one).

Registration hooks (``ngf_register_*``) return ``{name: factory}``. Lifecycle hooks
(``ngf_run_start``, ``ngf_epoch_end``, ``ngf_run_end``) let a plugin watch runs; they
return nothing, and an implementation may take any subset of the arguments. A plugin
is any module or object with functions or methods decorated by ``ngf.hookimpl``; installed
packages advertise theirs in the entry-point group ``ngf``.
"""

import pluggy

PROJECT = "ngf"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def ngf_register_rules():
    """Return ``{name: factory}``; ``factory(**hyperparameters)`` returns a ``LearningRule``.

    The factory's keyword arguments and their defaults are the rule's hyperparameters
    (``ngf rules`` lists them; ``--rule-opt NAME=VALUE`` sets them).
    """


@hookspec
def ngf_register_models():
    """Return ``{name: factory}``; ``factory(input_shape, n_classes, *, rngs, **options)``
    returns an NNX module with a ``layers`` sequence (see ``ngf.models``).

    Keyword options after ``rngs`` are set with ``--model-opt NAME=VALUE``.
    """


@hookspec
def ngf_register_datasets():
    """Return ``{name: factory}``; ``factory(data_dir=None, **options)`` returns a ``DataSplits``.

    Keyword options after ``data_dir`` are set with ``--dataset-opt NAME=VALUE``.
    """


@hookspec
def ngf_run_start(config, info):
    """Called once a run's data, model and rule are ready, before the first step.

    ``config`` is a read-only view of the run's ``RunConfig``; ``info`` holds the names
    ``rule``, ``model`` and ``dataset``, the run's ``seed``, ``steps_per_epoch``,
    ``steps_per_call``, ``device``, ``atomic_nodes`` (the nodes trained by backprop inside,
    ``"layer 1 (Block)"``; empty when none), ``stack`` (``{"size": K, "index": i}``, only
    for a run trained in a stack) and ``history``: the records of the epochs a resumed run
    already holds (empty for a fresh run).
    """


@hookspec
def ngf_epoch_end(config, epoch, record):
    """Called after each epoch with its number (from 1) and its metrics.

    ``record`` is the line ``metrics.jsonl`` gets: ``epoch``, ``train_loss``,
    ``train_accuracy``, ``test_loss``, ``test_accuracy``, ``seconds``; ``val_loss`` and
    ``val_accuracy`` with ``--val-split``; ``alignment_degrees`` (each node's angle to the
    backprop gradient, None for a node without weights or with a zero update) with
    ``--track-alignment``; and ``rule_metrics`` (``{name: epoch mean}``) for a rule that
    reports its own scalars (``LearningRule.metrics``).
    """


@hookspec
def ngf_run_end(config, summary):
    """Called once a run has completed or diverged (not when interrupted), with the summary ``summary.json`` gets.

    ``summary`` holds the names ``rule``, ``model`` and ``dataset``, ``status`` (``completed`` or
    ``diverged``, then with ``diverged_epoch`` and ``diverged_because``), ``epochs``,
    ``epochs_completed``, ``seed``, the last epoch's metrics (``val_loss`` and ``val_accuracy``,
    with ``best_epoch`` and ``best_val_accuracy``, under ``--val-split``), ``stack`` for a run
    trained in a stack, the times, ``config`` and ``history`` (every epoch's record).
    """
