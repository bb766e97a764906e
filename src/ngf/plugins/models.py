"""Built-in models, registered like any plugin's."""

from ngf.core.hookspecs import hookimpl
from ngf.models import mlp


@hookimpl
def ngf_register_models():
    """Register ``mlp``."""
    return {"mlp": mlp}
