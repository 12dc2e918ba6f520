"""Which job changes a checkpoint accepts, and secret redaction."""

from __future__ import annotations

from trainhub.resume import job_changes
from trainhub.secrets import redact, secret_values

SAVED = {"name": "a", "seed": 0, "optim": {"lr": 0.01}, "schedule": {"warmup_steps": 2},
         "train": {"max_steps": 10, "micro_batch_size": 8, "log_every": 1}, "log": {"console": "auto"},
         "data": {"train": ["/d/a.jsonl"]}}


def changed(**edits) -> dict:
    import copy

    job = copy.deepcopy(SAVED)
    for dotted, value in edits.items():
        node = job
        *parents, last = dotted.split("__")
        for p in parents:
            node = node[p]
        node[last] = value
    return job


def test_same_job_has_no_changes():
    assert job_changes(SAVED, changed()) == []


def test_length_and_reporting_changes_are_allowed():
    assert job_changes(SAVED, changed(train__max_steps=20, train__log_every=5, log__console="plain", name="b")) == []


def test_memory_settings_may_change_on_resume():
    saved = changed(train__grad_checkpointing=True)  # a checkpoint from before the modes: the boolean spelling
    assert job_changes(saved, changed(train__grad_checkpointing="selective", train__activation_offload=True)) == []


def test_what_was_trained_is_refused_with_old_and_new_values():
    lines = job_changes(SAVED, changed(optim__lr=0.1, train__micro_batch_size=4, seed=1,
                                       schedule={"warmup_steps": 5}))
    assert lines == ["optim.lr: 0.01 -> 0.1", "schedule.warmup_steps: 2 -> 5", "seed: 0 -> 1",
                     "train.micro_batch_size: 8 -> 4"]


def test_data_files_are_compared():
    assert job_changes(SAVED, changed(data__train=["/d/b.jsonl"])) == \
        ["data.train: ['/d/a.jsonl'] -> ['/d/b.jsonl']"]


def test_secret_values_come_from_secret_names_only():
    env = {"HF_TOKEN": "hf_abcdefgh", "WANDB_API_KEY": "0123456789", "MY_SERVICE_PASSWORD": "hunter22x",
           "PATH": "/usr/bin", "SHORT_TOKEN": "ab"}
    assert set(secret_values(env)) == {"hf_abcdefgh", "0123456789", "hunter22x"}
    assert redact("token=hf_abcdefgh; path=/usr/bin", secret_values(env)) == "token=***; path=/usr/bin"


def _resolved(tmp_path, **train) -> dict:
    """A whole resolved job as a run folder's job.json holds it."""
    from tests.conftest import tiny_pretrain_job
    from trainhub.job import Job

    return Job.model_validate(tiny_pretrain_job(tmp_path, train=train)).model_dump(mode="json")


def test_a_checkpoint_from_an_older_trainhub_lacks_the_newer_keys_and_still_resumes(tmp_path):
    """A job written before some keys existed (train.grad_clip stands in for any key newer than the checkpoint,
    one not in the allowed list): they are absent from it, and the schema's defaults (the old behaviour) stand
    in for them, so the same job resumes without --resume-force."""
    current = _resolved(tmp_path)
    older = _resolved(tmp_path)
    del older["train"]["grad_clip"], older["train"]["loss_watch"]
    assert job_changes(older, current) == []
    # a real change is still refused beside them
    assert job_changes(older, {**current, "seed": 1}) == ["seed: 0 -> 1"]


def test_watching_and_tracing_may_change_on_resume(tmp_path):
    assert job_changes(_resolved(tmp_path), _resolved(tmp_path, loss_watch={"action": "stop"},
                                                      profile={"start": 3})) == []
