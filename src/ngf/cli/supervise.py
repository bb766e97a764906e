"""One process of a multi-process run, watched from a small parent so that a lost peer ends in one line.

When the coordinator (process 0) dies, XLA's runtime client in every other process ends
that process at once with a fatal log and a C++ stack trace; no Python code runs in
between. So in a multi-process run (``$NGF_COORDINATOR`` or ``$NGF_DISTRIBUTED`` set)
the ``ngf`` command runs the real work in a child process and passes its output
through. XLA's own log lines are held back; if the child ends with XLA's fatal error
about the distributed service, this process prints one line instead and exits with
``EXIT_PEER_LOST`` (4); otherwise the held lines are printed and the child's exit
status is returned. A lost peer other than the coordinator is caught inside the child
by ``ngf.core.distributed.PeerWatch``, with the same line and status.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

SUPERVISED_ENV = "NGF_SUPERVISED"
EXIT_PEER_LOST = 4  # ngf.core.distributed.EXIT_PEER_LOST (not imported: it would import JAX here)
#: XLA's and gRPC's log lines, C++ stack traces, and gloo's connection notes
RUNTIME_LINE = re.compile(r"^([EFWI]\d{4} \d\d:\d\d|\*\*\* Check failure|\s+@\s+0x|Additional GRPC error|"
                          r":UNKNOWN:|terminate called|\s+what\(\):|\[Gloo\])")
FATAL = "JAX distributed service detected fatal errors"


def wanted() -> bool:
    """Whether this ``ngf`` command joins a multi-process run and is not yet the supervised child."""
    distributed = os.environ.get("NGF_COORDINATOR") or os.environ.get("NGF_DISTRIBUTED")
    return bool(distributed) and not os.environ.get(SUPERVISED_ENV)


def run(argv: list[str] | None) -> int:
    """Run ``ngf ARGV`` in a child process; its exit status, or ``EXIT_PEER_LOST`` in one line."""
    argv = list(sys.argv[1:] if argv is None else argv)
    child = subprocess.Popen([sys.executable, "-m", "ngf.cli", *argv], stderr=subprocess.PIPE,
                             env={**os.environ, SUPERVISED_ENV: "1"}, text=True, errors="replace",
                             preexec_fn=_die_with_parent)
    previous = _forward_signals(child)
    try:
        held, fatal, traceback = [], False, []
        for line in child.stderr:
            # a Python traceback is held to the end too: a lost coordinator can surface as a
            # JaxRuntimeError in the child ("Error dispatching computation") beside XLA's fatal log
            if traceback or line.startswith("Traceback (most recent call last):"):
                traceback.append(line)
            elif RUNTIME_LINE.match(line) or FATAL in line:
                fatal = fatal or FATAL in line
                held.append(line)
            else:
                sys.stderr.write(line)
                sys.stderr.flush()
            fatal = fatal or FATAL in line
        status = child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if status == EXIT_PEER_LOST:  # the child saw the lost peer first and said so in its own one line
        return EXIT_PEER_LOST
    if fatal and status != 0:
        print(f"error: the run lost a process (the coordinator, process 0, or another one died); ending this "
              f"process too (exit status {EXIT_PEER_LOST}); resume with the same command and --resume once "
              "every process is back", file=sys.stderr, flush=True)
        return EXIT_PEER_LOST
    sys.stderr.writelines([line for line in held if not line.startswith("[Gloo]")] + traceback)
    return status if status >= 0 else 128 - status  # killed by a signal: as a shell reports it


def _die_with_parent() -> None:
    """In the child, before it starts: on Linux, be killed when this parent dies (``PR_SET_PDEATHSIG``)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG


def _forward_signals(child: subprocess.Popen) -> dict:
    """Pass SIGINT and SIGTERM on to ``child``, which ends the run as a lone process would."""
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[signum] = signal.signal(signum, lambda s, f: child.send_signal(s))
        except ValueError:  # not the main thread
            pass
    return previous
