"""ngf: train neural networks with learning rules other than backpropagation."""

from ngf.core.errors import Diverged, NgfError, Terminated
from ngf.core.feedback import check_distribution, glorot_std, propagate_errors, random_like, walk_down
from ngf.core.network import INPUT, LayerTrace, Network, cross_entropy, output_error, updates_from_deltas
from ngf.core.rule import LearningRule, stateless_init
from ngf.data.sources import IdxDataset
from ngf.data.splits import DataSplits
from ngf.host.hookspecs import hookimpl
from ngf.host.registry import load_registry
from ngf.runs.api import run
from ngf.runs.callbacks import Callbacks
from ngf.runs.config import OPTIMIZERS, RunConfig
from ngf.version import __version__

__all__ = [
    "INPUT", "OPTIMIZERS", "Callbacks", "DataSplits", "Diverged", "IdxDataset", "LayerTrace", "LearningRule",
    "Network", "NgfError", "RunConfig", "Terminated", "check_distribution", "cross_entropy", "glorot_std",
    "__version__", "hookimpl", "load_registry",
    "output_error", "propagate_errors", "random_like", "run", "stateless_init",
    "updates_from_deltas", "walk_down",
]
