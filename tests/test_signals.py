"""Signals at any moment of the ``ngf`` command's life: exit 130 or 143, at most one line (issue 21, items 1-3).

Before the fix a Ctrl-C while JAX imported was swallowed by JAX's garbage-collector
callback ("Exception ignored in _xla_gc_callback") and the run trained on to exit 0, or
printed a 40-line import traceback; a signal during start-up could segfault the process
as it exited. ``scripts/signal_trials.py`` makes the trials; here 20 of them, spread over
the first 4 s, plus two in the middle of training.
"""

import gc
import importlib.util
import os
import signal
import subprocess
import sys
import time

import pytest

import ngf
from conftest import ROOT
from ngf.cli.signals import SignalGuard
from ngf.core.errors import Terminated


def _trials_script():
    spec = importlib.util.spec_from_file_location("signal_trials", ROOT / "scripts" / "signal_trials.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HEAVY = ("jax", "jaxlib", "flax", "optax", "numpy", "rich", "pluggy", "datasets", "matplotlib")


def test_the_command_line_entry_imports_only_the_standard_library():
    """What the console script imports before ``main`` installs its handlers."""
    code = ("import sys; import ngf.cli; import ngf; "
            f"print(sorted(m for m in sys.modules if m.partition('.')[0] in {HEAVY!r}))")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           cwd=ROOT).stdout.strip()
    assert found == "[]"


def test_the_public_names_still_import_from_the_package():
    from ngf import LearningRule, hookimpl, run  # the import is the check

    assert ngf.hookimpl is hookimpl and ngf.run is run and ngf.LearningRule is LearningRule
    assert set(ngf.__all__) == set(ngf._HOMES) | {"__version__"} and set(ngf.__all__) <= set(dir(ngf))
    assert all(getattr(ngf, name) is not None for name in ngf.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ngf.nope  # noqa: B018


@pytest.fixture
def guard():
    """A ``SignalGuard`` on this (the main) thread, put back afterwards."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    guard = SignalGuard().install()
    yield guard
    guard.restore()
    signal.signal(signal.SIGINT, previous)


def _let_handlers_run():
    for _ in range(1000):  # Python runs signal handlers between bytecodes
        pass


def test_a_signal_during_start_up_waits_until_the_command_is_loaded(guard):
    os.kill(os.getpid(), signal.SIGTERM)
    _let_handlers_run()  # nothing raised while "importing"
    assert guard.received == signal.SIGTERM
    with pytest.raises(Terminated):
        guard.started()
    with pytest.raises(KeyboardInterrupt):  # running: raised where it lands
        os.kill(os.getpid(), signal.SIGINT)
        _let_handlers_run()


def test_an_interruption_lost_in_a_garbage_collector_callback_is_raised_again(guard):
    """Python drops an exception raised in a gc callback (JAX has one); the guard re-sends the signal."""
    guard.started()

    def callback(phase, info):
        if phase == "start":
            gc.callbacks.remove(callback)
            os.kill(os.getpid(), signal.SIGINT)
            _let_handlers_run()  # the KeyboardInterrupt arises here, inside the callback

    gc.callbacks.append(callback)
    with pytest.raises(KeyboardInterrupt):
        gc.collect()  # the first KeyboardInterrupt is dropped in here
        time.sleep(5)  # the signal sent again ends this sleep
    assert callback not in gc.callbacks


def test_the_handlers_are_put_back(guard):
    guard.restore()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_signals_at_any_moment_of_start_up_and_training_end_in_one_line(tmp_path):
    """20 console-script processes signalled at moments spread over 0-4 s (start-up ends within about 3 s), and 2
    in mid-training, 6 at a time (scripts/signal_trials.py runs 60 and 6 by default)."""
    trials = _trials_script()
    done = trials.run_trials(20, 4.0, 6, training=2, folder=tmp_path)
    assert len(done) == 22
    # only a SIGINT within Python's own start-up, before any ngf function runs, may meet Python's own
    # handler: tens of milliseconds of the process's CPU time (judged by its own progress, not the wall
    # clock, which a busy machine stretches)
    excused = [t for t in done if t.verdict == trials.BEFORE_MAIN and (t.cpu_at_signal or 0.0) < 0.3]
    assert [trials.describe(t) for t in done if t.verdict != "clean" and t not in excused] == []
    in_training = [t.output for t in done[:2]]  # they were started first
    assert all("; resume with: ngf run --plugin ngf_tiny_data --resume" in text for text in in_training), in_training


def test_a_sigint_inherited_as_ignored_stays_ignored_and_sigterm_still_ends_the_run():
    """`cmd &` in a script starts `ngf` with SIGINT ignored: it stays ignored (the shell's convention),
    SIGTERM ends the run in one line. The trials start their runs with SIGINT at its default for this."""
    trials = _trials_script()
    proc = subprocess.Popen(trials.ngf_command() + trials.RUN, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=trials.environment(), cwd=ROOT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    time.sleep(1.0)  # a SIGINT that was not ignored would have ended it (130) by now or soon after
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 143 and len(output.decode().strip().splitlines()) == 1, output
