"""Job files through the real CLI: `extends` and presets, paths relative to the job file, and errors that
name the file and line a key was written at."""

from __future__ import annotations

from tests.conftest import DATA, ROOT, rows, run_cli

WIDE = {"COLUMNS": "300"}


def test_a_job_extending_a_preset_trains_on_data_beside_it(tmp_path):
    """cpu-tiny brings the model and the batch shape; the data is named relative to the job file's folder,
    which is not where train runs, so the hub says which file it used."""
    folder = tmp_path / "exp"
    folder.mkdir()
    lines = (DATA / "stories.jsonl").read_text().splitlines()[:200]
    (folder / "stories_small.jsonl").write_text("\n".join(lines) + "\n")
    job = folder / "job.yaml"
    job.write_text(f"extends: cpu-tiny\nname: tiny-preset\noutput_dir: {tmp_path / 'run'}\nmethod: pretrain\n"
                   f"data:\n  train: stories_small.jsonl\n  format: text\ntrain: {{max_steps: 4}}\n"
                   f"log: {{console: plain}}\n")
    assert not (ROOT / "stories_small.jsonl").exists()
    done = run_cli("train", "--config", str(job), env=WIDE)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"note: {job}:6: data.train[0]: stories_small.jsonl is not in the working directory ({ROOT}); " \
           f"using {folder / 'stories_small.jsonl'}, relative to {job}" in done.stderr
    start = rows(tmp_path / "run", "start")[0]
    assert start["job"]["data"]["train"][0]["path"] == str(folder / "stories_small.jsonl")
    assert start["job"]["model"]["init"]["hidden_size"] == 32 and start["max_steps"] == 4
    assert rows(tmp_path / "run", "end")[0]["status"] == "completed"


def test_a_missing_file_is_named_at_its_line_in_the_file_that_wrote_it(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("extends: cpu-tiny\nmethod: pretrain\ndata:\n  format: text\n  train: gone.jsonl\n")
    job = tmp_path / "sub" / "job.yaml"
    job.parent.mkdir()
    job.write_text("extends: ../base.yaml\nname: x\ntrain: {max_step: 3}\n")
    done = run_cli("validate", "--config", str(job), env=WIDE)
    assert done.returncode == 1
    assert f"{job}:3: unknown key 'train.max_step'; did you mean 'train.max_steps'?" in done.stderr
    job.write_text("extends: ../base.yaml\nname: x\n")
    done = run_cli("validate", "--config", str(job), env=WIDE)
    assert done.returncode == 1
    assert f"error {base}:5: data.train[0]: file not found: {ROOT / 'gone.jsonl'}" in done.stderr
