"""The command line: a layer above the library that parses, calls ``ngf.run`` and friends, and renders.

``entry`` is the console script, ``parser`` the arguments, ``options`` turns them into a
``RunConfig``, ``ui`` draws with rich, ``commands`` and ``experiments`` run the commands.
"""

from ngf.cli.entry import EXIT_SIGINT, EXIT_SIGTERM, main
from ngf.cli.parser import EXIT_USAGE, build_parser

__all__ = ["EXIT_SIGINT", "EXIT_SIGTERM", "EXIT_USAGE", "build_parser", "main"]
