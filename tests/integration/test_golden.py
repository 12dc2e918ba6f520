"""The native engine's golden loss curve through the real `train` command, in the suite CI runs (`make test`):
one 12-step pretraining run of a tiny Llama, ~15 s on 2 cores. The rest of the CLI runs: test_native_cli.py."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import tiny_pretrain_job
from tests.integration.test_native_cli import GOLDEN, _train, train_losses


def test_golden_losses_fp32_cpu(tmp_path):
    """Fixed seed, fp32, CPU: per-step losses equal the recorded ones (versions pinned in constraints/cpu.txt).

    Re-record with TRAINHUB_RECORD_GOLDEN=1 after a deliberate change, and say why in the commit."""
    done = _train(tmp_path, tiny_pretrain_job(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    losses = train_losses(tmp_path / "run")
    if os.environ.get("TRAINHUB_RECORD_GOLDEN"):
        GOLDEN.write_text(json.dumps({"losses": losses}, indent=1) + "\n")
        # never pass by comparing the run with what it just wrote
        pytest.fail(f"recorded {len(losses)} losses in {GOLDEN}, rerun without the variable TRAINHUB_RECORD_GOLDEN")
    golden = json.loads(GOLDEN.read_text())["losses"]
    assert len(golden) == 12  # train.max_steps of tiny_pretrain_job, one row a step
    assert losses == pytest.approx(golden, abs=1e-4)
