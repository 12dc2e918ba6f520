"""The llamafactory backend's process, run by its own environment's python (trainhub.envs):

    python -m trainhub.runners.llamafactory_child --run-dir DIR --config DIR/llamafactory.yaml [--dry-run]

Reads the job (DIR/job.json) and LLaMA-Factory's config that the runner translated it to, and calls
`llamafactory.train.tuner.run_exp(config, callbacks=[MetricsCallback])`: LLaMA-Factory builds its
own trainer; trainhub's one Trainer callback (metrics/hf_callback.py) writes the common metric rows.
Exits 0 (completed), 130 (stopped by SIGTERM/SIGINT after saving) or 1 (failed; an error row says why).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

import yaml

from trainhub.job import Job
from trainhub.metrics import EndRow, ErrorRow, MetricLog
from trainhub.metrics.log import new_run_id
from trainhub.runners.base import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainhub.runners.llamafactory_child")
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    job = Job.model_validate_json((args.run_dir / "job.json").read_text())
    config = yaml.safe_load(args.config.read_text())
    log = MetricLog(args.run_dir / "metrics.jsonl")
    run_id = os.environ.get("TRAINHUB_RUN_ID") or new_run_id()
    t0 = time.time()
    callback = None
    try:
        import torch
        from llamafactory.train.tuner import run_exp
        from transformers.utils import logging as hf_logging

        from trainhub.engine.stop import StopFlag
        from trainhub.metrics.hf_callback import MetricsCallback, start_fields

        hf_logging.disable_progress_bar()
        notes = []
        if not torch.cuda.is_available() and (config.get("bf16") or config.get("fp16")):
            config.update(bf16=False, fp16=False)
            notes.append(f"CPU: fp32 instead of {job.train.precision.type}")
        precision = "bf16 autocast" if config.get("bf16") else "fp16 autocast" if config.get("fp16") else "fp32"
        stats = json.loads((Path(config["dataset_dir"]) / "stats.json").read_text())
        t = job.train
        fields = start_fields(backend="llamafactory", job=job, precision=precision, notes=notes, data=stats,
                              tokens_per_step=t.micro_batch_size * t.grad_accum * job.data.max_length,
                              resumed_from=config.get("resume_from_checkpoint"))
        callback = MetricsCallback(log, run_id, start_fields=fields, seq_len=job.data.max_length,
                                   stop=StopFlag.install())
        run_exp(config, callbacks=[callback])
    except Exception as err:
        detail = traceback.format_exc()
        print(detail, file=sys.stderr, flush=True)
        message = f"{type(err).__name__}: {err}"
        log.write(ErrorRow(run_id=run_id, step=callback.step if callback else 0, message=message[:2000],
                           detail=detail[-4000:]))
        if callback is not None:
            callback.end("failed", EXIT_FAILED)
        else:
            log.write(EndRow(run_id=run_id, step=0, status="failed", wall_s=time.time() - t0, tokens=0,
                             final_loss=None, exit_code=EXIT_FAILED))
        log.close()
        return EXIT_FAILED
    stopped = callback.stop.requested
    if not stopped:
        callback.checkpoint(config["output_dir"])  # LLaMA-Factory saves the final model (adapter) there
    code = EXIT_INTERRUPTED if stopped else EXIT_OK
    callback.end("interrupted" if stopped else "completed", code)
    log.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
