"""The one exception type that ngf turns into a one-line message and exit status 2."""


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
