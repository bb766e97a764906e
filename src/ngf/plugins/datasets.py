"""Built-in datasets, registered like any plugin's."""

from ngf.data.sources import IdxDataset
from ngf.host.hookspecs import hookimpl


@hookimpl
def ngf_register_datasets():
    """Register ``mnist`` and ``fashion-mnist``."""
    return {
        "mnist": IdxDataset("mnist", hub_id="ylecun/mnist"),
        "fashion-mnist": IdxDataset("fashion-mnist", hub_id="zalando-datasets/fashion_mnist"),
    }
