"""`python -m trainhub.trl_child --run-dir DIR [--dry-run] [--resume CKPT]`: train DIR/job.json with TRL.

Exits 0 (completed), 130 (interrupted after saving) or 1 (failed; an error row says why).
"""

from __future__ import annotations

import sys

from trainhub.child import child_main


def explain(err: Exception) -> dict | None:
    from trainhub.rewards.load import RewardError

    return {"message": str(err)} if isinstance(err, RewardError) else None  # names method.rewards[i] and the function


def main(argv: list[str] | None = None) -> int:
    from trainhub.trl_child.train import train

    return child_main("trainhub.trl_child", train, argv, explain=explain)


if __name__ == "__main__":
    sys.exit(main())
