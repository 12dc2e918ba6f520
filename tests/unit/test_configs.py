"""Every shipped job file is valid; the quickstart also passes preflight (its data ships with it).

sft_lora.yaml names the quickstart's output model, which exists only after the quickstart has run,
so only the schema is checked for it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT
from trainhub.jobfile import preflight, read_yaml, resolve, validate

CONFIGS = sorted((ROOT / "config").glob("*.yaml"))


def load_config(path: Path):
    raw, lines = read_yaml(path)
    return resolve(validate(raw, str(path), lines), cwd=ROOT)


def test_the_shipped_configs_are_found():
    assert {"quickstart.yaml", "sft_lora.yaml"} <= {p.name for p in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_is_valid(path):
    job = load_config(path)
    assert job.output_dir == str(ROOT / "runs" / job.name)
    for f in [s.path for s in [*job.data.train, *job.data.eval]]:
        assert Path(f).is_absolute() and Path(f).is_file(), f
        assert Path(f).parent == ROOT / "config" / "data"


def test_quickstart_passes_preflight():
    job = load_config(ROOT / "config" / "quickstart.yaml")
    assert preflight(job) == []
    assert (job.method.type, job.adapter.type, job.data.format) == ("pretrain", "full", "text")
    assert job.model.init is not None and job.model.init.tokenizer.type == "train"


@pytest.mark.parametrize("name", ["sft_lora.yaml", "sft_llamafactory.yaml"])
def test_sft_lora_points_at_the_quickstart_output(name):
    quickstart = load_config(ROOT / "config" / "quickstart.yaml")
    sft = load_config(ROOT / "config" / name)
    assert sft.model.path == str(Path(quickstart.output_dir) / "final")
    assert (sft.method.type, sft.adapter.type, sft.data.format) == ("sft", "lora", "messages")
    # Without the quickstart's model, the only preflight problem is that model.
    assert [p.where for p in preflight(sft)] in ([], ["model.path"])
