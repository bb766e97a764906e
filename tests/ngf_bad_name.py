"""A test plugin that registers a rule under a name no command can select (``a,b``: ``--rules`` splits it).

Load it with ``--plugin ngf_bad_name``; the registry refuses the name at registration.
"""

from ngf.host.hookspecs import hookimpl
from ngf.plugins.bp import bp


@hookimpl
def ngf_register_rules():
    """Register ``a,b``."""
    return {"a,b": bp}
