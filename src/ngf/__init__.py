"""ngf: train neural networks with learning rules other than backpropagation."""

from ngf.core.api import OPTIMIZERS, Callbacks, RunConfig, run
from ngf.core.data import DataSplits, IdxDataset
from ngf.core.errors import Diverged, NgfError, Terminated
from ngf.core.feedback import check_distribution, glorot_std, propagate_errors, random_like, walk_down
from ngf.core.hookspecs import hookimpl
from ngf.core.network import (INPUT, LayerTrace, Network, cross_entropy, output_error,
                              updates_from_deltas)
from ngf.core.registry import load_registry
from ngf.core.rule import LearningRule, stateless_init

__version__ = "0.1.0"

__all__ = [
    "INPUT", "OPTIMIZERS", "Callbacks", "DataSplits", "Diverged", "IdxDataset", "LayerTrace", "LearningRule",
    "Network", "NgfError", "RunConfig", "Terminated", "check_distribution", "cross_entropy", "glorot_std",
    "hookimpl", "load_registry",
    "output_error", "propagate_errors", "random_like", "run", "stateless_init",
    "updates_from_deltas", "walk_down",
]
