"""A test plugin that signals its own process at the end of an epoch.

``NGF_TEST_SIGNAL=SIGTERM@2`` sends SIGTERM to this process when epoch 2 ends, as a
user's Ctrl-C (SIGINT) or a scheduler's SIGTERM would; load it with
``--plugin ngf_signal_plugin`` (the tests folder is on ``sys.path``).
"""

import os
import signal

from ngf.host.hookspecs import hookimpl


@hookimpl
def ngf_epoch_end(epoch):
    """Send the configured signal when the configured epoch ends."""
    spec = os.environ.get("NGF_TEST_SIGNAL", "")
    if "@" in spec:
        name, at = spec.split("@")
        if epoch == int(at):
            os.kill(os.getpid(), getattr(signal, name))
