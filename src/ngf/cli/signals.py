"""SIGINT and SIGTERM for the ``ngf`` command: caught from its first line, acted on where it is safe.

A signal that meets Python's defaults while JAX imports either prints an import
traceback, or lands in a callback that Python runs on the side (JAX's garbage-collector
callback), where the ``KeyboardInterrupt`` is printed as "Exception ignored" and lost,
and the run trains on to the end. So the command installs ``SignalGuard`` before it
imports anything heavy, and the guard:

- while the command starts (imports, plugins), when nothing has been written yet: as the
  console script (``leave_at_once``), prints one line and ends the process there and
  then, without the interpreter's teardown, which a half-imported JAX could crash;
  called in-process (``ngf.cli.main([...])``), only records the signal, and ``started()``
  turns it into ``KeyboardInterrupt`` (``Terminated`` for SIGTERM) once nothing is half
  imported;
- once the command runs, raises at once, as Python's own handler does, so the run's
  interruption path writes its summary;
- re-sends a signal whose exception Python had to drop (``sys.unraisablehook``: a
  garbage-collector callback, a ``__del__``) instead of printing it, so it is raised
  again a moment later, in ordinary code.

This module imports only the standard library (``ngf.cli.entry`` imports it first).
"""

from __future__ import annotations

import os
import signal
import sys
import time

from ngf.core.errors import Terminated

HANDLED = (signal.SIGINT, signal.SIGTERM)
EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal's number, as shells report it
BEFORE_THE_RUN = "interrupted: before the run started; nothing to resume"
RESEND_AFTER = 0.01  # seconds before an interruption Python dropped is sent again


def interruption(signum: int) -> KeyboardInterrupt:
    """The exception a signal becomes: ``KeyboardInterrupt`` for SIGINT, ``Terminated`` for SIGTERM."""
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


class SignalGuard:
    """Records SIGINT and SIGTERM while the command starts and raises them once it runs."""

    def __init__(self, leave_at_once: bool = False):
        self.received: int | None = None  # the last signal received
        self.deferring = True
        self.leave_at_once = leave_at_once
        self.previous: dict[int, object] = {}
        self.previous_hook = None
        self.in_hook = False  # inside ``_unraisable``: a signal now is left to the resend

    def install(self) -> SignalGuard:
        """Take over SIGINT and SIGTERM (not where they are ignored, nor outside the main thread)."""
        try:
            for signum in HANDLED:
                if signal.getsignal(signum) is not signal.SIG_IGN:  # `cmd &` in a script ignores SIGINT
                    self.previous[signum] = signal.signal(signum, self._handle)
        except ValueError:  # not the main thread: signals are not ours to handle
            return self
        self.previous_hook, sys.unraisablehook = sys.unraisablehook, self._unraisable
        return self

    def _handle(self, signum, frame) -> None:
        self.received = signum
        if self.in_hook:  # inside the hook below, where a raise would be dropped: its resend delivers it
            return
        if not self.deferring:
            raise interruption(signum)
        if self.leave_at_once:
            leave(EXIT_STATUS[signum], BEFORE_THE_RUN)

    def started(self) -> None:
        """The command is loaded: a signal received so far is raised now, later ones at once."""
        self.deferring = False
        if self.received is not None:
            raise interruption(self.received)

    def _unraisable(self, info) -> None:
        """An interruption Python could not raise (it arose in a callback): deliver it again, shortly.

        Not from here: a signal sent now would be handled inside this hook, whose own exception
        Python would drop too. A thread sends it a moment later, once the hook has returned, to
        ordinary code; a signal that arrives while the hook runs is left to that resend.
        """
        if isinstance(info.exc_value, KeyboardInterrupt) and self.received is not None:
            self.in_hook = True
            try:
                import threading  # not at start-up: the command reaches its handlers sooner

                threading.Thread(target=self._resend, daemon=True).start()
            finally:
                self.in_hook = False
            return
        (self.previous_hook or sys.__unraisablehook__)(info)

    def _resend(self) -> None:
        """Send the interruption again once this hook has returned (on a loaded machine the sending
        thread may run before the hook's own thread start returns: it waits for that)."""
        time.sleep(RESEND_AFTER)
        while self.in_hook:
            time.sleep(RESEND_AFTER)
        os.kill(os.getpid(), self.received)

    def finished(self) -> None:
        """The command is over and the process ends: a signal from now on changes nothing."""
        self.deferring, self.leave_at_once = True, False

    def restore(self) -> None:
        """Put the previous handlers and hook back."""
        for signum, handler in self.previous.items():  # None: a handler not set from Python
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        self.previous.clear()
        if self.previous_hook is not None:
            sys.unraisablehook, self.previous_hook = self.previous_hook, None


def leave(status: int, line: str = "") -> None:
    """Flush the output, print ``line`` on stderr, and end the process without the interpreter's teardown."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, RuntimeError):  # closed, a broken pipe, or mid-write when signalled
            pass
    if line:
        try:
            os.write(2, (line + "\n").encode())  # not through sys.stderr: the signal may have cut a write to it
        except OSError:
            pass
    os._exit(status)
