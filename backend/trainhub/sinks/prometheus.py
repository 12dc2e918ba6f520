"""Prometheus: `log.prometheus: {port, host}` serves the run's gauges at http://HOST:PORT/metrics while
the launch lives (from its start row to its end row).

    trainhub_step, trainhub_max_steps, trainhub_loss, trainhub_eval_loss, trainhub_learning_rate,
    trainhub_tokens (processed so far), trainhub_tokens_per_second, trainhub_mfu (0..1),
    trainhub_memory_bytes, trainhub_eta_seconds, trainhub_status{trainhub_status="running"|...}

every one labelled with `run` (the job's name) and `backend`, in a registry of the sink's own (never the
process-wide default one). A gauge with no value yet (eval loss before the first eval, MFU on CPU) is NaN.
ETA: the steps left times the mean seconds per step since this launch's first train row.
A gauge holds only the present, so a resumed run has nothing to repeat.
"""

from __future__ import annotations

import math
from pathlib import Path

from trainhub.job import PrometheusLog
from trainhub.metrics.rows import EndRow, EvalRow, StartRow, TrainRow
from trainhub.sinks import need

STATES = ["starting", "running", "completed", "interrupted", "failed"]


class PrometheusSink:
    name = "prometheus"

    def __init__(self, cfg: PrometheusLog):
        self.cfg = cfg
        self.server = None
        self.where = ""

    def open(self, start: StartRow, run_dir: Path, resumed: bool) -> None:
        prom = need("prometheus_client", "prometheus")
        self.registry = prom.CollectorRegistry()
        labels = {"run": str(start.job.get("name", "")), "backend": start.backend}

        def gauge(name: str, doc: str):
            return prom.Gauge(f"trainhub_{name}", doc, list(labels), registry=self.registry).labels(**labels)

        self.g = {name: gauge(name, doc) for name, doc in (
            ("step", "Optimizer steps completed."), ("max_steps", "Optimizer steps this run takes."),
            ("loss", "Training loss of the last logged step."), ("eval_loss", "Loss on the eval set, last eval."),
            ("learning_rate", "Learning rate of the last logged step."),
            ("tokens", "Tokens processed since the start of the run (padding excluded)."),
            ("tokens_per_second", "Throughput since the previous logged step."),
            ("mfu", "Model FLOPs utilisation, 0..1."), ("memory_bytes", "Peak memory so far."),
            ("eta_seconds", "Estimated seconds until the last step."))}
        for g in self.g.values():
            g.set(math.nan)
        self.status = prom.Enum("trainhub_status", "How the run stands.", list(labels), states=STATES,
                                registry=self.registry).labels(**labels)
        self.status.state("running")
        self.g["step"].set(start.step)
        self.g["max_steps"].set(start.max_steps)
        self.max_steps, self.first = start.max_steps, None
        # binds the port here: a port in use fails the open, which the hub reports as a warning
        self.server, self.thread = prom.start_http_server(self.cfg.port, addr=self.cfg.host, registry=self.registry)
        self.where = f"http://{self.cfg.host}:{self.cfg.port}/metrics"

    def write(self, row) -> None:
        g = self.g
        g["step"].set(row.step)
        if isinstance(row, TrainRow):
            _set(g["loss"], row.loss)
            g["learning_rate"].set(row.lr)
            g["tokens"].set(row.tokens)
            g["tokens_per_second"].set(row.tokens_per_s)
            _set(g["mfu"], row.mfu)
            _set(g["memory_bytes"], None if row.mem_gb is None else row.mem_gb * 1e9)
            now = row.time
            if self.first is None:
                self.first = (row.step, now)
            elif row.step > self.first[0]:
                per_step = (now - self.first[1]) / (row.step - self.first[0])
                g["eta_seconds"].set(max(self.max_steps - row.step, 0) * per_step)
        elif isinstance(row, EvalRow):
            g["eval_loss"].set(row.eval_loss)

    def close(self, end: EndRow | None) -> None:
        if self.server is None:
            return
        if end is not None:
            self.status.state(end.status)
            self.g["eta_seconds"].set(0)
        server, self.server = self.server, None
        server.shutdown()
        server.server_close()
        self.thread.join(timeout=5)


def _set(gauge, value: float | None) -> None:
    gauge.set(math.nan if value is None else value)
