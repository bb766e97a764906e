"""ngf: train neural networks with learning rules other than backpropagation.

The public names below are imported on first use (PEP 562), so ``import ngf`` and the
``ngf`` command's entry module load only the standard library: the command installs its
signal handlers before JAX is imported (docs/errors.md, "How a run ends").
"""

from __future__ import annotations

import importlib

from ngf.version import __version__

_HOMES = {  # public name -> the module that defines it
    "Diverged": "ngf.core.errors", "NgfError": "ngf.core.errors", "Terminated": "ngf.core.errors",
    "check_distribution": "ngf.core.feedback", "glorot_std": "ngf.core.feedback",
    "propagate_errors": "ngf.core.feedback", "random_like": "ngf.core.feedback", "walk_down": "ngf.core.feedback",
    "INPUT": "ngf.core.network", "LayerTrace": "ngf.core.network", "Network": "ngf.core.network",
    "cross_entropy": "ngf.core.network", "output_error": "ngf.core.network",
    "updates_from_deltas": "ngf.core.network",
    "LearningRule": "ngf.core.rule", "Updates": "ngf.core.rule", "stateless_init": "ngf.core.rule",
    "IdxDataset": "ngf.data.sources", "DataSplits": "ngf.data.splits",
    "hookimpl": "ngf.host.hookspecs", "load_registry": "ngf.host.registry",
    "run": "ngf.runs.api", "Callbacks": "ngf.runs.callbacks",
    "OPTIMIZERS": "ngf.runs.config", "RunConfig": "ngf.runs.config",
}

__all__ = [  # every name of _HOMES, and the version
    "Callbacks", "DataSplits", "Diverged", "INPUT", "IdxDataset", "LayerTrace", "LearningRule", "Network",
    "NgfError", "OPTIMIZERS", "RunConfig", "Terminated", "Updates", "__version__", "check_distribution",
    "cross_entropy", "glorot_std", "hookimpl", "load_registry", "output_error", "propagate_errors", "random_like",
    "run", "stateless_init", "updates_from_deltas", "walk_down",
]


def __getattr__(name: str):
    """Import a public name's module on first use and keep the name here."""
    if name not in _HOMES:
        raise AttributeError(f"module 'ngf' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's names, the lazily imported public ones included."""
    return sorted(set(globals()) | set(__all__))
