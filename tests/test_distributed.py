"""Two processes on loopback through jax.distributed: the same run as one process, one writer, lost peers.

Each process is ``python -m ngf.cli run`` with 2 forced host devices; two of them
with ``--devices 4`` must train exactly the run that one process with 4 forced devices
trains (docs/scaling.md).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from flax import serialization

TESTS = Path(__file__).resolve().parent
#: ddtp: a rule with trainable parameters (Q), a noise draw from each step's key and a reported metric
RUN = ["run", "--plugin", "ngf_tiny_data", "--dataset", "tiny", "--rule", "ddtp", "--schedule", "constant",
       "--model-opt", "widths=8", "--batch-size", "16", "--devices", "4", "--quiet"]


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(argv, devices=2, **env) -> subprocess.Popen:
    """``python -m ngf.cli ARGV`` with ``devices`` forced host devices and ``env`` added; the suite's XLA flags
    (tests/conftest.py: the one-process and two-process runs compared compile alike) kept."""
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()
    full = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
            "XLA_FLAGS": flags, **env}
    return subprocess.Popen([sys.executable, "-m", "ngf.cli", *argv], env=full, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def start_pair(argv, timeout="30"):
    """Processes 0 and 1 of a two-process run of ``ngf ARGV``."""
    port = free_port()
    return [start(argv, NGF_COORDINATOR=f"127.0.0.1:{port}", NGF_NUM_PROCESSES="2", NGF_PROCESS_ID=str(rank),
                  NGF_PEER_TIMEOUT=timeout) for rank in (0, 1)]


def finish(processes, limit=120):
    """``[(exit status, stdout, stderr)]`` of ``processes``, each given at most ``limit`` seconds."""
    return [(p.wait(limit), *p.communicate()) for p in processes]


def leaves(folder: Path) -> list:
    """The arrays of a run folder's checkpoint."""
    payload = serialization.msgpack_restore((folder / "checkpoint.msgpack").read_bytes())
    return [payload["leaves"][k] for k in sorted(payload["leaves"])]


def metrics(folder: Path) -> list:
    """``metrics.jsonl`` without the seconds, the rule's metrics as ``rule/NAME`` keys."""
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return [{**{k: v for k, v in record.items() if k not in ("seconds", "rule_metrics")},
             **{f"rule/{k}": v for k, v in record.get("rule_metrics", {}).items()}} for record in records]


def test_two_processes_train_the_one_process_run_write_once_and_resume(tmp_path):
    single = start([*RUN, "--epochs", "3", "--out", str(tmp_path / "single")], devices=4)
    first = finish(start_pair([*RUN, "--epochs", "2", "--out", str(tmp_path / "pair")]))
    assert [status for status, _, _ in first] == [0, 0], first
    assert "wrote" in first[0][1] and "wrote" not in first[1][1]  # only process 0 writes the folder
    assert sorted(p.name for p in (tmp_path / "pair").iterdir() if not p.name.startswith(".")) == [
        "checkpoint.msgpack", "config.toml", "metrics.jsonl", "summary.json"]
    resumed = finish(start_pair(["run", "--plugin", "ngf_tiny_data", "--resume", str(tmp_path / "pair"),
                                 "--epochs", "3", "--quiet"]))
    assert [status for status, _, _ in resumed] == [0, 0], resumed
    assert finish([single])[0][0] == 0
    pair, one = metrics(tmp_path / "pair"), metrics(tmp_path / "single")
    assert len(pair) == len(one) == 3 and all("rule/reconstruction" in record for record in pair)
    for got, want in zip(pair, one):
        assert got == pytest.approx(want, rel=1e-5, abs=1e-6)
    for pair, one in zip(leaves(tmp_path / "pair"), leaves(tmp_path / "single"), strict=True):
        np.testing.assert_allclose(pair, one, rtol=1e-5, atol=1e-6)


def _started_training(folder: Path, processes, limit=90.0) -> None:
    """Wait until process 0 has written its first epoch."""
    deadline = time.monotonic() + limit
    while not (folder / "metrics.jsonl").is_file() or not (folder / "metrics.jsonl").read_text():
        assert time.monotonic() < deadline and all(p.poll() is None for p in processes), finish(processes, 5)
        time.sleep(0.1)


@pytest.mark.parametrize("lost", [1, 0], ids=["a-peer", "the-coordinator"])
def test_a_lost_process_ends_the_other_in_one_line(tmp_path, lost):
    processes = start_pair([*RUN, "--epochs", "100000", "--out", str(tmp_path / "run")], timeout="4")
    _started_training(tmp_path / "run", processes)
    os.killpg(processes[lost].pid, signal.SIGKILL)  # the whole process, as when its machine goes away
    began = time.monotonic()
    status, out, err = finish([processes[1 - lost]], limit=60)[0]
    processes[lost].communicate()
    assert status == 4, (status, out, err)
    assert time.monotonic() - began < 30
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("[Gloo]")]
    assert len(lines) == 1 and lines[0].startswith("error:") and "exit status 4" in lines[0], err
    assert "Traceback" not in out + err and (tmp_path / "run" / "checkpoint.msgpack").is_file()
