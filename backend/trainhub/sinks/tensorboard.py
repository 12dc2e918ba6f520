"""TensorBoard: `log.tensorboard: true` writes event files to run_dir/tensorboard/.

Written with the tensorboard package's own event-file writer and protos (no torch, no TensorFlow in the
hub): one scalar per number of a train or eval row (trainhub.sinks.scalars: train/loss, eval/loss, ...),
at the row's step and wall time, and the resolved job as text. `tensorboard --logdir run_dir/tensorboard`.

Resume: a resumed launch writes a new event file that opens with SessionLog START at the step after its
checkpoint, the mark TensorBoard's reader purges on (as torch's SummaryWriter(purge_step=...) writes):
steps an earlier launch logged after that checkpoint are dropped, and the resumed launch's rows for them
count, as in the metric log.
"""

from __future__ import annotations

import json
from pathlib import Path

from trainhub.metrics.rows import EndRow, StartRow
from trainhub.sinks import need, scalars

FLUSH_S = 5
"""Seconds between flushes of the event file: a live TensorBoard sees rows this late at most."""


class TensorBoardSink:
    name = "tensorboard"

    def __init__(self):
        self.writer = None
        self.where = ""

    def open(self, start: StartRow, run_dir: Path, resumed: bool) -> None:
        need("tensorboard", "tensorboard")
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self.event_pb2, self.summary_pb2 = event_pb2, summary_pb2
        logdir = Path(run_dir) / "tensorboard"
        self.writer = EventFileWriter(str(logdir), flush_secs=FLUSH_S)
        if resumed:
            self.writer.add_event(event_pb2.Event(
                wall_time=start.time, step=start.step + 1,
                session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)))
        self._text("job", "```json\n" + json.dumps(start.job, indent=2) + "\n```", start.step, start.time)
        self.where = f"tensorboard --logdir {logdir}"

    def write(self, row) -> None:
        values = scalars(row)
        if values:
            Value = self.summary_pb2.Summary.Value
            summary = self.summary_pb2.Summary(value=[Value(tag=k, simple_value=v) for k, v in values.items()])
            self.writer.add_event(self.event_pb2.Event(wall_time=row.time, step=row.step, summary=summary))

    def close(self, end: EndRow | None) -> None:
        if self.writer is None:
            return
        if end is not None:
            loss = f", final loss {end.final_loss:.4f}" if end.final_loss is not None else ""
            self._text("end", f"{end.status} after {end.step} steps in {end.wall_s:.1f} s{loss}", end.step, end.time)
        writer, self.writer = self.writer, None
        writer.close()

    def _text(self, tag: str, text: str, step: int, wall_time: float) -> None:
        """A text summary (TensorBoard's text plugin: a string tensor tagged with plugin name 'text')."""
        from tensorboard.compat.proto import tensor_pb2, tensor_shape_pb2, types_pb2

        s = self.summary_pb2
        tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[text.encode()],
                                        tensor_shape=tensor_shape_pb2.TensorShapeProto())
        meta = s.SummaryMetadata(plugin_data=s.SummaryMetadata.PluginData(plugin_name="text"))
        summary = s.Summary(value=[s.Summary.Value(tag=tag, metadata=meta, tensor=tensor)])
        self.writer.add_event(self.event_pb2.Event(wall_time=wall_time, step=step, summary=summary))
