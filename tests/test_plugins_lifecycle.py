"""Lifecycle hooks: called in order beside the callbacks; the CSV logger; a raising observer."""

import csv
import warnings

import pytest

import ngf
from ngf import hookimpl
from conftest import make_tiny
from ngf.host.registry import load_registry


class Recorder:
    """An observer plugin that writes down every lifecycle call."""

    def __init__(self):
        self.calls = []

    @hookimpl
    def ngf_run_start(self, config, info):
        self.calls.append(("start", config.epochs, info["rule"]))

    @hookimpl
    def ngf_epoch_end(self, epoch, record):  # a subset of the spec's arguments
        self.calls.append(("epoch", epoch, record["epoch"]))

    @hookimpl
    def ngf_run_end(self, summary):
        self.calls.append(("end", summary["epochs"]))


class Exploding:
    """An observer that raises at every epoch's end."""

    __name__ = "exploding-logger"

    def __init__(self):
        self.tries = 0

    @hookimpl
    def ngf_epoch_end(self):
        self.tries += 1
        raise OSError("disk full")


class Problems(ngf.Callbacks):
    """Callbacks that keep the problems reported during a run."""

    def __init__(self):
        self.problems, self.ended = [], False

    def on_problem(self, message):
        self.problems.append(message)

    def on_end(self, summary):
        self.ended = True


def run_with(tiny_data, *plugins, callbacks=None, **overrides):
    registry = load_registry(extra_plugins=plugins, autoload=False)
    options = {"rule": "bp", "dataset": tiny_data, "epochs": 2, "batch_size": 32, "model_opts": {"widths": (8,)}}
    return ngf.run(registry=registry, callbacks=callbacks, **{**options, **overrides})


@pytest.fixture(scope="module")
def observed(tmp_path_factory):
    """One run on tiny data watched by a recorder, an exploding observer and the CSV logger."""
    recorder, exploding = Recorder(), Exploding()
    path = tmp_path_factory.mktemp("logs") / "sub" / "run.csv"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = run_with(make_tiny(), exploding, recorder, log_csv=str(path))
    return summary, recorder, exploding, path, [str(w.message) for w in caught if w.category is RuntimeWarning]


def test_hooks_are_called_in_order(observed):
    _, recorder, _, _, _ = observed
    assert recorder.calls == [("start", 2, "bp"), ("epoch", 1, 1), ("epoch", 2, 2), ("end", 2)]


def test_a_raising_observer_is_reported_once_and_the_run_goes_on(observed):
    summary, recorder, exploding, _, problems = observed
    assert len(summary["history"]) == 2 and recorder.calls[-1] == ("end", 2)
    assert exploding.tries == 1
    (problem,) = problems  # without callbacks of one's own, a problem is a RuntimeWarning
    assert "'exploding-logger'" in problem and "ngf_epoch_end" in problem and "disk full" in problem


def test_csv_logger_writes_one_row_per_epoch(observed):
    summary, _, _, path, _ = observed
    rows = list(csv.DictReader(path.open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[-1]["test_accuracy"]) == pytest.approx(summary["test_accuracy"])


def test_csv_logger_that_cannot_write_does_not_stop_the_run(tiny_data, tmp_path):
    """A --log-csv that cannot be written is refused up front (docs/errors.md); one that stops being
    writable once the run has started only costs its rows."""

    class Blocking(Problems):
        def on_start(self, info):  # before the logger's ngf_run_start: its folder becomes a file
            (tmp_path / "logs").rmdir()
            (tmp_path / "logs").write_text("")

    (tmp_path / "logs").mkdir()
    callbacks = Blocking()
    summary = run_with(tiny_data, callbacks=callbacks, epochs=1, log_csv=str(tmp_path / "logs" / "run.csv"))
    assert len(summary["history"]) == 1 and callbacks.ended
    (problem,) = callbacks.problems
    assert "'ngf.plugins.csv_logger' failed in ngf_run_start" in problem and "\n" not in problem
