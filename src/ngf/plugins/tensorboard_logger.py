"""The built-in TensorBoard logger: ``--log tensorboard[:DIR]`` (extra ``ngf[tensorboard]``).

Writes TensorBoard event files with ``tensorboard``'s own writer (no TensorFlow or
PyTorch needed): each epoch's ``train_loss``, ``train_accuracy``, ``test_loss``,
``test_accuracy``, ``seconds`` and, with ``--track-alignment``,
``alignment_degrees/node_<l>``, at step = epoch; the run's configuration as text at
the start; its summary and status as text at the end. DIR defaults to the run folder's
``tb/``; in ``ngf compare`` and ``ngf sweep`` to the experiment folder's ``tb/``, with
one subfolder per run (``<dataset>/<variant>/seed<N>``), so ``tensorboard --logdir
DIR/tb`` shows the whole comparison. Events are flushed after every epoch.
"""

from __future__ import annotations

import json
import time

import numpy as np

from ngf.plugins.logger_base import RunLogger, summary_text


class TensorBoardRun:
    """One event file: scalars and text summaries, built from tensorboard's protocol buffers."""

    def __init__(self, folder):
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.plugins.text.summary_v2 import text_pb
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
        from tensorboard.util import tensor_util

        self.event_pb2, self.summary_pb2, self.text_pb, self.tensor_util = event_pb2, summary_pb2, text_pb, tensor_util
        self.writer = EventFileWriter(str(folder))

    def scalar(self, tag: str, value: float, step: int) -> None:
        """One point of the time series ``tag`` (as ``tensorboard.summary.Writer.add_scalar`` writes it)."""
        pb = self.summary_pb2
        metadata = pb.SummaryMetadata(plugin_data=pb.SummaryMetadata.PluginData(plugin_name="scalars"),
                                      data_class=pb.DataClass.DATA_CLASS_SCALAR)
        event = self.event_pb2.Event(wall_time=time.time(), step=step)
        event.summary.value.add(tag=tag, tensor=self.tensor_util.make_tensor_proto(np.float32(value)),
                                metadata=metadata)
        self.writer.add_event(event)

    def text(self, tag: str, text: str, step: int) -> None:
        """A text summary (shown in TensorBoard's Text tab; Markdown)."""
        self.writer.add_event(self.event_pb2.Event(wall_time=time.time(), step=step, summary=self.text_pb(tag, text)))

    def flush(self) -> None:
        """Write what is buffered to disk."""
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()


def _code(text: str) -> str:
    return "```\n" + text + "\n```"  # TensorBoard renders text as Markdown


class TensorBoardLogger(RunLogger):
    """``--log tensorboard[:DIR]``."""

    name = "tensorboard"

    def start(self, library, arg, run, config, info):
        """Open an event file in the run's log folder and write the configuration."""
        folder = run.folder("tb", arg)
        folder.mkdir(parents=True, exist_ok=True)
        handle = TensorBoardRun(folder)
        handle.text("config", _code(json.dumps(config, indent=1, default=str)), 0)
        handle.text("run", f"{run.name}: {info.get('steps_per_epoch')} steps per epoch on {info.get('device')}", 0)
        handle.flush()
        return handle

    def epoch(self, handle, epoch, scalars):
        """One point per number, at step = epoch."""
        for tag, value in scalars.items():
            handle.scalar(tag, value, epoch)
        handle.flush()

    def end(self, handle, summary, config_file):
        """The status and the summary as text, at the last epoch's step."""
        step = summary.get("epochs_completed", 0)
        handle.text("status", summary.get("status", "?"), step)
        handle.text("summary", _code(summary_text(summary)), step)
        if config_file is not None:
            handle.text("config.toml", _code(config_file.read_text()), step)
        handle.close()

    def close(self, handle, status):
        """Record how the run ended, then close the file."""
        handle.text("status", status, 0)
        handle.close()


PLUGIN = TensorBoardLogger()  # what ngf registers: its methods are the hooks
