"""``resnet``, registered the way a third-party package would register a model.

An installed package would expose this module in its entry-point group ``ngf``;
the built-in one is listed in ``BUILTIN_PLUGINS`` instead.
"""

from ngf.host.hookspecs import hookimpl
from ngf.models.resnet import resnet


@hookimpl
def ngf_register_models():
    """Register ``resnet``."""
    return {"resnet": resnet}
