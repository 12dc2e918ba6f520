"""The native engine's process: `python -m trainhub.engine --run-dir DIR [--dry-run] [--resume CKPT]`.

Reads DIR/job.json (written by the hub), trains (GRPO-family methods through engine/rl/train.py), and exits 0 (completed),
130 (interrupted after saving) or 1 (failed, non-finite stop included; an error row says why).

`python -m trainhub.engine describe` is `trainhub plan`'s look at the optimizer in this same environment: the
resolved job as JSON on stdin, its parameter groups as JSON on stdout (engine/optim/describe.py). The loop's
imports wait inside `main` so that this answer does not pay for them.
"""

from __future__ import annotations

import sys


def explain(err: Exception) -> dict | None:
    """A non-finite stop or a diverging loss (train.loss_watch stop) wrote its own error row; a refused checkpoint
    gets one."""
    from trainhub.engine.checkpoint import CheckpointError
    from trainhub.engine.train import LossDiverged, NonFiniteStop

    if isinstance(err, NonFiniteStop | LossDiverged | CheckpointError):
        return {"message": str(err), "error_row": isinstance(err, CheckpointError), "step": getattr(err, "step", 0)}
    return None


def run(job, run_dir, log, run_id, **kw) -> str:
    """The loop the job's method takes: the GRPO family has its own (engine/rl/train.py), the rest train.py."""
    if job.method.type == "grpo":
        from trainhub.engine.rl.train import train_rl

        return train_rl(job, run_dir, log, run_id, **kw)
    from trainhub.engine.train import train

    return train(job, run_dir, log, run_id, **kw)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["describe"]:
        from trainhub.engine.optim.describe import main as describe

        return describe()
    from transformers.utils import logging as hf_logging

    from trainhub.child import child_main

    hf_logging.disable_progress_bar()  # its bars would garble the hub's console
    return child_main("trainhub.engine", run, argv, explain=explain)


if __name__ == "__main__":
    sys.exit(main())
