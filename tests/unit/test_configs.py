"""Every shipped job file is valid, its `extends` chain merged in; the quickstart also passes preflight (its
data ships with it). Every shipped preset (config/presets/) is valid on top of a minimal job, and at least
one shipped config uses each.

sft_lora.yaml names the quickstart's output model, which exists only after the quickstart has run,
so only the schema is checked for it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT
from trainhub.compose import PRESETS, compose, presets
from trainhub.jobfile import preflight, resolve, validate

CONFIGS = sorted((ROOT / "config").glob("*.yaml"))
PRESET_FILES = sorted(PRESETS.glob("*.yaml"))


def load_config(path: Path):
    raw, origins = compose(path)
    return resolve(validate(raw, str(path), origins), cwd=ROOT, origins=origins)


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


def test_the_shipped_presets_are_found():
    assert PRESETS == ROOT / "config" / "presets"
    assert {"lora", "cpu-tiny"} <= set(presets())


@pytest.mark.parametrize("path", PRESET_FILES, ids=[p.name for p in PRESET_FILES])
def test_preset_is_valid_on_a_minimal_job(path, tmp_path):
    """A preset is a fragment: on top of the least a job must say (name, model, method, data), it validates."""
    data = ROOT / "config" / "data" / "stories.jsonl"
    job = tmp_path / "job.yaml"
    job.write_text(f"extends: {path.stem}\nname: preset-test\nmethod: pretrain\ndata: {{train: {data}, format: text}}\n"
                   f"model: {{init: {{hidden_size: 32, intermediate_size: 64, num_layers: 2, num_heads: 4}}}}\n"
                   f"train: {{max_steps: 10}}\n")
    raw, origins = compose(job)
    validate(raw, str(job), origins)


@pytest.mark.parametrize("name", [p.stem for p in PRESET_FILES])
def test_every_preset_is_used_by_a_shipped_config_or_a_test(name):
    users = [p for p in [*CONFIGS, *(ROOT / "tests").rglob("*.py")] if f"extends: {name}" in p.read_text()
             or f"extends: [{name}" in p.read_text()]
    assert users, f"preset {name} is used by no shipped config and no test"


def test_shipped_configs_extend_the_lora_preset():
    for name in ("sft_lora.yaml", "sft_llamafactory.yaml"):
        raw, origins = compose(ROOT / "config" / name)
        assert raw["adapter"] == {"type": "lora", "rank": 16, "alpha": 32, "dropout": 0.0, "targets": "all-linear"}
        assert origins[("adapter", "rank")].file == str(PRESETS / "lora.yaml")
