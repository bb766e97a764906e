"""Every hook an ngf plugin can implement. Each returns ``{name: factory}``.

A plugin is any module or object with functions decorated by ``ngf.hookimpl``;
installed packages advertise theirs in the entry-point group ``ngf``.
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
    """Return ``{name: factory}``; ``factory(data_dir=None)`` returns a ``DataSplits``."""
