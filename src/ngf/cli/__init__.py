"""The command line: a layer above the library that parses, calls ``ngf.run`` and friends, and renders.

``entry`` is the console script, ``parser`` the arguments, ``options`` turns them into a
``RunConfig``, ``ui`` draws with rich, ``commands`` and ``experiments`` run the commands,
``signals`` handles SIGINT and SIGTERM, ``supervise`` watches a multi-process run's processes
and ``hints`` says where a rule at its defaults misses its paper's protocol.
"""

from ngf.cli.entry import EXIT_SIGINT, EXIT_SIGTERM, main

__all__ = ["EXIT_SIGINT", "EXIT_SIGTERM", "EXIT_USAGE", "build_parser", "main"]


def __getattr__(name: str):
    """``build_parser`` and ``EXIT_USAGE``, imported on first use: the console script reaches ``main``
    (which installs the signal handlers) with as little imported as possible."""
    if name in ("EXIT_USAGE", "build_parser"):
        from ngf.cli import parser

        return getattr(parser, name)
    raise AttributeError(f"module 'ngf.cli' has no attribute {name!r}")
