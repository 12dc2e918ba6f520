"""The common metric log every backend writes: row schema, writer/reader, FLOPs and MFU."""

from trainhub.metrics.log import MetricLog, read_rows
from trainhub.metrics.rows import (
    SCHEMA_VERSION,
    CheckpointRow,
    EndRow,
    ErrorRow,
    EvalRow,
    Row,
    StartRow,
    TrainRow,
    WarningRow,
)

__all__ = [
    "SCHEMA_VERSION", "CheckpointRow", "EndRow", "ErrorRow", "EvalRow", "MetricLog", "Row", "StartRow",
    "TrainRow", "WarningRow", "read_rows",
]
