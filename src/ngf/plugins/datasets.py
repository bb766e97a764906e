"""Built-in datasets, registered like any plugin's."""

from ngf.data.hub import HubImageDataset
from ngf.data.images import print_notes
from ngf.data.sources import IdxDataset
from ngf.host.hookspecs import hookimpl


@hookimpl
def ngf_register_datasets():
    """Register ``mnist``, ``fashion-mnist``, ``cifar10`` and ``cifar100``."""
    return {
        "mnist": IdxDataset("mnist", hub_id="ylecun/mnist"),
        "fashion-mnist": IdxDataset("fashion-mnist", hub_id="zalando-datasets/fashion_mnist"),
        "cifar10": HubImageDataset("cifar10", hub_id="uoft-cs/cifar10"),
        "cifar100": HubImageDataset("cifar100", hub_id="uoft-cs/cifar100", label="fine_label"),
    }


@hookimpl
def ngf_run_start():
    """Print the notes on how the run's data were read (a held-out test split), now that it starts."""
    print_notes()
