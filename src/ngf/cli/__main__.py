"""``python -m ngf.cli``: the ``ngf`` command."""

import sys

from ngf.cli.entry import main

sys.exit(main())
