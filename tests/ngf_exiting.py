"""A test plugin that calls ``sys.exit(3)`` where a careless plugin might: in a factory and in a hook.

Its rule ``exits`` exits when built; with ``NGF_TEST_EXIT_IN=ngf_epoch_end`` (or
``ngf_run_start``, ``ngf_run_end``) that lifecycle hook exits too, and with
``NGF_TEST_INTERRUPT_IN=ngf_run_end`` it raises ``KeyboardInterrupt`` there. Load it
with ``--plugin ngf_exiting`` (the tests folder is on ``sys.path``). Status 3 is the
one a diverged run ends with, so a plugin's exit taken for ngf's would pose as divergence.
"""

import os
import sys

from ngf.host.hookspecs import hookimpl


def _exit_in(hook: str) -> None:
    if os.environ.get("NGF_TEST_EXIT_IN") == hook:
        sys.exit(3)
    if os.environ.get("NGF_TEST_INTERRUPT_IN") == hook:
        raise KeyboardInterrupt


def exits():
    """A rule factory that exits instead of returning a rule."""
    sys.exit(3)


@hookimpl
def ngf_register_rules():
    """Register ``exits``."""
    return {"exits": exits}


@hookimpl
def ngf_run_start():
    """Exit if asked to."""
    _exit_in("ngf_run_start")


@hookimpl
def ngf_epoch_end():
    """Exit if asked to."""
    _exit_in("ngf_epoch_end")


@hookimpl
def ngf_run_end():
    """Exit if asked to."""
    _exit_in("ngf_run_end")
