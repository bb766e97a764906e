"""Built-in models, registered like any plugin's."""

from ngf.host.hookspecs import hookimpl
from ngf.models.cnn import cnn
from ngf.models.mlp import mlp


@hookimpl
def ngf_register_models():
    """Register ``mlp`` and ``cnn``."""
    return {"mlp": mlp, "cnn": cnn}
