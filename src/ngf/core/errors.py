"""ngf's exception types: ``NgfError`` (one line, exit status 2), its subclass ``Diverged`` (exit status 3)
and ``Terminated`` (SIGTERM, a ``KeyboardInterrupt``)."""


class NgfError(Exception):
    """A user-facing error: bad input, a missing file, an unknown name.

    The CLI prints ``str(error)`` on one line and exits with ``exit_code``; the
    Python API lets it propagate so callers can catch it.
    """

    exit_code = 2


def unknown_name(kind: str, name: str, valid) -> NgfError:
    """Build the error for an unknown ``kind`` name, listing the valid ones."""
    choices = ", ".join(sorted(valid)) or "(none registered)"
    return NgfError(f"unknown {kind} {name!r}; valid {kind}s: {choices}")


class Diverged(NgfError):
    """A run whose loss or parameters stopped being finite (or grew past the divergence bound).

    ``ngf.run`` raises it at the end of the epoch that diverged, after writing
    ``summary.json`` with ``"status": "diverged"``; the checkpoint of the last good epoch
    is kept. ``summary`` is that summary; the CLI exits with status 3.
    """

    exit_code = 3

    def __init__(self, message: str, summary: dict | None = None):
        super().__init__(message)
        self.summary = summary


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised by the ``ngf`` command's handler so that a run ends as on Ctrl-C."""
