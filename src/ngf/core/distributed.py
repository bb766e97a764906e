"""Several processes, one run: joining through ``jax.distributed``, and leaving cleanly when a peer is lost.

A multi-process run starts the same command in every process (docs/scaling.md). Either
the three variables ``NGF_COORDINATOR`` (``host:port`` of process 0),
``NGF_NUM_PROCESSES`` and ``NGF_PROCESS_ID`` say who is who, or, under SLURM,
``NGF_DISTRIBUTED=slurm`` lets JAX read the allocation (``srun`` sets its variables).

A process that dies would leave the others blocked in a collective until XLA's own
heartbeat gives up (100 s by default) and aborts with a C++ stack trace. Instead each
process runs a :class:`PeerWatch`: a daemon thread that ticks a counter of its own in
the coordination service's key-value store and reads the others'. When a peer's counter
has not moved for ``NGF_PEER_TIMEOUT`` seconds (default 30), or the coordinator cannot
be reached, it prints one line and ends the process with exit status 4
(``EXIT_PEER_LOST``). The last finished epoch's checkpoint stays in the run folder, so
the same command with ``--resume`` continues once every process is back.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time

from ngf.core.errors import NgfError

DISTRIBUTED_ENV = ("NGF_COORDINATOR", "NGF_NUM_PROCESSES", "NGF_PROCESS_ID")
MODE_ENV = "NGF_DISTRIBUTED"  # "slurm": let JAX read the SLURM allocation
TIMEOUT_ENV = "NGF_PEER_TIMEOUT"
DEFAULT_TIMEOUT_S = 30.0
EXIT_PEER_LOST = 4
_KEY = "ngf/peer-watch"


def peer_timeout() -> float:
    """Seconds without a sign of life after which a peer counts as lost (``$NGF_PEER_TIMEOUT``)."""
    text = os.environ.get(TIMEOUT_ENV, "")
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 1 <= value <= 3600:
        raise NgfError(f"{TIMEOUT_ENV} must be a number of seconds between 1 and 3600, got {text!r}")
    return value


def _explicit_processes() -> tuple[str, int, int]:
    """Coordinator, process count and rank from the three ``NGF_*`` variables, checked."""
    missing = [name for name in DISTRIBUTED_ENV if not os.environ.get(name)]
    if missing:
        raise NgfError(f"a multi-process run needs {', '.join(DISTRIBUTED_ENV)}; missing: {', '.join(missing)}")
    try:
        count, rank = int(os.environ["NGF_NUM_PROCESSES"]), int(os.environ["NGF_PROCESS_ID"])
    except ValueError:
        raise NgfError("NGF_NUM_PROCESSES and NGF_PROCESS_ID must be integers") from None
    if not 0 <= rank < count:
        raise NgfError(f"NGF_PROCESS_ID must lie in [0, NGF_NUM_PROCESSES) = [0, {count}), got {rank}")
    return os.environ["NGF_COORDINATOR"], count, rank


def initialize_distributed() -> bool:
    """Join a multi-process run when ``$NGF_COORDINATOR`` or ``$NGF_DISTRIBUTED=slurm`` asks for one.

    Must run before JAX touches a device. Starts the :class:`PeerWatch`. Returns whether
    this process joined a run of several processes.
    """
    mode = os.environ.get(MODE_ENV, "")
    if not os.environ.get("NGF_COORDINATOR") and not mode:
        return False
    if mode and mode != "slurm":
        raise NgfError(f"unknown {MODE_ENV} {mode!r}; valid values: slurm (or set {', '.join(DISTRIBUTED_ENV)})")
    import jax

    timeout = peer_timeout()
    # XLA's own heartbeat must outlast the watch, so that the watch's one line comes first
    limits = {"initialization_timeout": max(60, int(4 * timeout)), "heartbeat_timeout_seconds": int(3 * timeout) + 10}
    try:
        _join(jax, mode, limits)
    except NgfError:
        raise
    except Exception as exc:  # noqa: BLE001 - JAX raises RuntimeError, ValueError, XlaRuntimeError...
        raise NgfError("could not join the multi-process run: " + " ".join(str(exc).split())[:300]) from None
    if jax.process_count() > 1:
        PeerWatch.start(timeout)
    return jax.process_count() > 1


def _join(jax, mode: str, limits: dict) -> None:
    """``jax.distributed.initialize`` from SLURM's variables or from the three ``NGF_*`` ones."""
    if mode == "slurm":
        jax.distributed.initialize(cluster_detection_method="slurm", **limits)
    else:
        address, count, rank = _explicit_processes()
        jax.distributed.initialize(address, num_processes=count, process_id=rank, **limits)


def _end_in_one_line(problem: str) -> None:
    """Print ``problem`` as this process's one line and end it with ``EXIT_PEER_LOST``."""
    print(f"error: {problem}; ending this process too (exit status {EXIT_PEER_LOST}); "
          "resume with the same command and --resume once every process is back", file=sys.stderr, flush=True)
    os._exit(EXIT_PEER_LOST)


def is_writer() -> bool:
    """Whether this process writes the run's files: process 0, or the only process."""
    import jax

    return jax.process_index() == 0


class PeerWatch:
    """A daemon thread that ends this process in one line when another process of the run is lost."""

    _running: "PeerWatch | None" = None

    def __init__(self, client, rank: int, count: int, timeout: float):
        self.client, self.rank, self.count, self.timeout = client, rank, count, timeout
        self.stopped = threading.Event()
        self.ticks = 0
        self.seen = {peer: (None, time.monotonic()) for peer in range(count) if peer != rank}

    @classmethod
    def start(cls, timeout: float) -> "PeerWatch":
        """Start watching the processes of the run this process has joined."""
        import jax
        from jax._src import distributed

        watch = cls(distributed.global_state.client, jax.process_index(), jax.process_count(), timeout)
        threading.Thread(target=watch._loop, name="ngf-peer-watch", daemon=True).start()
        cls._running = watch
        atexit.register(cls.stop_running)  # runs before JAX's own shutdown barrier (registered earlier)
        return watch

    @classmethod
    def stop_running(cls) -> None:
        """Stop the watch (the run is over) and tell the peers this process left on purpose."""
        watch, cls._running = cls._running, None
        if watch is not None:
            watch.stopped.set()
            try:
                watch.client.key_value_set(f"{_KEY}/done/{watch.rank}", "1", allow_overwrite=True)
            except Exception:  # noqa: BLE001 - the coordinator may already be gone; nothing to tell
                pass

    def _loop(self) -> None:
        while not self.stopped.wait(min(1.0, self.timeout / 5)):
            problem = self.check()
            if problem is not None and not self.stopped.is_set():
                _end_in_one_line(problem)

    def check(self) -> str | None:
        """Tick this process's counter and read the peers'; a one-line problem, or ``None``."""
        self.ticks += 1
        try:  # raises when the coordination service (in process 0) cannot be reached
            self.client.key_value_set(f"{_KEY}/tick/{self.rank}", str(self.ticks), allow_overwrite=True)
        except Exception as exc:  # noqa: BLE001 - XlaRuntimeError: UNAVAILABLE, DEADLINE_EXCEEDED...
            if self.rank == 0:
                return "the coordination service stopped answering: " + " ".join(str(exc).split())[:160]
            return f"lost the coordinator (process 0) at {os.environ.get('NGF_COORDINATOR', 'its address')}"
        now = time.monotonic()
        for peer, (last, since) in list(self.seen.items()):
            if self._get(f"done/{peer}") is not None:  # it finished the run and left on purpose
                del self.seen[peer]
                continue
            tick = self._get(f"tick/{peer}")
            if tick != last:
                self.seen[peer] = (tick, now)
            elif now - since > self.timeout:
                return f"process {peer} of {self.count} gave no sign of life for {self.timeout:g} s"
        return None

    def _get(self, key: str) -> str | None:
        """The value under ``key`` in the watch's part of the store, or ``None`` if it is not set."""
        try:
            return self.client.key_value_try_get(f"{_KEY}/{key}")
        except Exception:  # noqa: BLE001 - NOT_FOUND
            return None
