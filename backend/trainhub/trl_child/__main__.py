"""`python -m trainhub.trl_child --run-dir DIR [--dry-run] [--resume CKPT]`: train DIR/job.json with TRL.

Exits 0 (completed), 130 (interrupted after saving) or 1 (failed; an error row says why).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

from trainhub.child import fail, protect_stdio
from trainhub.job import Job
from trainhub.metrics import MetricLog
from trainhub.metrics.log import new_run_id
from trainhub.runners.base import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK


def main(argv: list[str] | None = None) -> int:
    protect_stdio()
    parser = argparse.ArgumentParser(prog="python -m trainhub.trl_child")
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--dry-run", action="store_true", help="one optimizer step, then exit")
    parser.add_argument("--resume", type=Path, default=None, help="a checkpoint folder to continue from")
    args = parser.parse_args(argv)
    job = Job.model_validate_json((args.run_dir / "job.json").read_text())
    log = MetricLog(args.run_dir / "metrics.jsonl")
    run_id = os.environ.get("TRAINHUB_RUN_ID") or new_run_id()
    t0 = time.time()
    from trainhub.data.chat import TemplateError
    from trainhub.data.sources import DataError
    from trainhub.rewards.load import RewardError
    from trainhub.trl_child.train import train

    try:
        status = train(job, args.run_dir, log, run_id, dry_run=args.dry_run, resume=args.resume)
    except (DataError, TemplateError) as err:
        return fail(log, run_id, t0, f"data: {err}", "")
    except RewardError as err:
        return fail(log, run_id, t0, str(err), "")  # names method.rewards[i] and the function
    except Exception as err:
        detail = traceback.format_exc()
        print(detail, file=sys.stderr, flush=True)
        return fail(log, run_id, t0, f"{type(err).__name__}: {err}", detail)
    finally:
        log.close()
    return {"interrupted": EXIT_INTERRUPTED, "failed": EXIT_FAILED}.get(status, EXIT_OK)


if __name__ == "__main__":
    sys.exit(main())
