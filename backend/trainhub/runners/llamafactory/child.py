"""The llamafactory backend's process, run by its own environment's python (trainhub.envs):

    python -m trainhub.runners.llamafactory.child --run-dir DIR --config DIR/llamafactory.yaml [--dry-run]

Reads the job (DIR/job.json) and LLaMA-Factory's config that the runner translated it to, and calls
`llamafactory.train.tuner.run_exp(config, callbacks=[MetricsCallback])`: LLaMA-Factory builds its
own trainer; trainhub's one Trainer callback (hf/callback.py) writes the common metric rows. The
precision is decided here, on the device the child has, by the rule every backend uses
(engine/precision.py). Exits 0 (completed), 130 (stopped by SIGTERM/SIGINT after saving) or 1 (failed;
an error row says why).
"""

from __future__ import annotations

import sys
from pathlib import Path

from trainhub.child import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, child_main
from trainhub.job import Job
from trainhub.metrics import MetricLog


def main(argv: list[str] | None = None) -> int:
    return child_main("trainhub.runners.llamafactory.child", train, argv,
                      options=(("--config", "LLaMA-Factory's config, as the runner translated the job"),),
                      resume_help="unused: a resumed run's checkpoint is in the config (resume_from_checkpoint)")


def train(job: Job, run_dir: Path, log: MetricLog, run_id: str, *, dry_run: bool = False,
          resume: Path | None = None, config: Path) -> str:
    """run_exp with trainhub's callback; returns 'completed', 'interrupted' or 'failed'. An error inside
    run_exp is reported through the callback (the step reached, the tokens so far)."""
    import json
    import traceback

    import torch
    import yaml
    from llamafactory.train.tuner import run_exp
    from transformers.utils import logging as hf_logging

    from trainhub.engine.precision import NAMES
    from trainhub.engine.stop import StopFlag
    from trainhub.hf.callback import MetricsCallback, start_fields
    from trainhub.job.sizes import longest_sequence, tokens_per_step
    from trainhub.metrics import ErrorRow
    from trainhub.runners.llamafactory.translate import precision_keys

    hf_logging.disable_progress_bar()
    settings = yaml.safe_load(config.read_text())
    notes: list[str] = []
    cuda = torch.cuda.is_available()  # the precision again, on this device (the config assumed a bf16 GPU)
    settings.update(precision_keys(job.train.precision.type, cuda=cuda, bf16_ok=cuda and torch.cuda.is_bf16_supported(),
                                   notes=notes))
    precision = NAMES["bf16" if settings["bf16"] else "fp16" if settings["fp16"] else "fp32"]
    stats = json.loads((Path(settings["dataset_dir"]) / "stats.json").read_text())
    fields = start_fields(backend="llamafactory", job=job, precision=precision, notes=notes, data=stats,
                          tokens_per_step=tokens_per_step(job), resumed_from=settings.get("resume_from_checkpoint"))
    callback = MetricsCallback(log, run_id, start_fields=fields, seq_len=longest_sequence(job),
                               stop=StopFlag.install())
    try:
        run_exp(settings, callbacks=[callback])
    except Exception as err:
        detail = traceback.format_exc()
        print(detail, file=sys.stderr, flush=True)
        log.write(ErrorRow(run_id=run_id, step=callback.step, message=f"{type(err).__name__}: {err}"[:2000],
                           detail=detail[-4000:]))
        callback.end("failed", EXIT_FAILED)
        return "failed"
    if callback.stop.requested:
        callback.end("interrupted", EXIT_INTERRUPTED)
        return "interrupted"
    callback.checkpoint(settings["output_dir"])  # LLaMA-Factory saves the final model (adapter) there
    callback.end("completed", EXIT_OK)
    return "completed"


if __name__ == "__main__":
    sys.exit(main())
