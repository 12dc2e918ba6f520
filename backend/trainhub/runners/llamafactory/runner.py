"""Runner `llamafactory`: LLaMA-Factory's `run_exp`, in an environment of its own (trainhub.envs).

prepare() loads the job's data through trainhub's own loader (the same records, split and
weights as every backend), hands it to LLaMA-Factory with the data layer's writers
(data/llamafactory/dataset_info.json, absolute paths), writes LLaMA-Factory's own config
(run_dir/llamafactory.yaml, translate.py; what `plan` prints) and launches `python -m
trainhub.runners.llamafactory.child` with that environment's python. The child calls
`run_exp(config, callbacks=[trainhub's metrics callback])`.

What LLaMA-Factory cannot do is a problem from check(), never a silent drop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from trainhub import envs
from trainhub.host import Host
from trainhub.job import Job
from trainhub.jobfile import JobError, Problem
from trainhub.runners.base import (
    Launch,
    adapter_problems,
    child_argv,
    native_only_problems,
    one_process_problems,
    optim_problems,
)
from trainhub.runners.llamafactory.translate import (
    CONFIG,
    DATASET,
    EVAL_DATASET,
    STAGES,
    TEMPLATES,
    translate,
)

OTHER_BACKENDS = {"grpo": "trl"}
"""Methods LLaMA-Factory cannot train, and who can."""
NAME = "llamafactory"


class LlamaFactoryRunner:
    name = NAME
    methods = tuple(STAGES)
    features = ("full", "lora", "bf16", "fp16", "fp32", "grad-checkpointing", "packing", "cpu", "cuda",
                "own-environment")

    def missing(self) -> list[str]:
        return [] if envs.python_of(NAME) else [f"its environment ({envs.setup_command(NAME)})"]

    def check(self, job: Job, host: Host) -> list[Problem]:
        problems = []
        if envs.python_of(NAME) is None:
            problems.append(Problem("backend", f"llamafactory runs in an environment of its own, which is not "
                                               f"set up here; create it with: {envs.setup_command(NAME)}"))
        method = job.method.type
        if method not in STAGES:
            who = OTHER_BACKENDS.get(method, "native")
            problems.append(Problem("method.type", f"llamafactory cannot train method '{method}'; use "
                                                   f"--backend {who}"))
        if job.model.init is not None:
            problems.append(Problem("model.init", "llamafactory trains an existing model (model.path); "
                                                  "building one from an architecture needs --backend native"))
        if job.data.template == "plain":
            problems.append(Problem("data.template", "LLaMA-Factory has no template rendering like trainhub's "
                                                     f"'plain'; use one of {', '.join(TEMPLATES)} or null"))
        if job.schedule.decay == "linear" and job.schedule.min_lr_ratio > 0:
            problems.append(Problem("schedule.min_lr_ratio", "llamafactory's linear decay ends at 0; "
                                    "set min_lr_ratio 0, or use decay cosine (which takes a floor)"))
        problems += native_only_problems(job, "llamafactory")
        problems += one_process_problems(job, "llamafactory", "trainhub's callback in its child would write "
                                         "rows and commit checkpoints in every process")
        problems += adapter_problems(job, "llamafactory", self.features)
        problems += optim_problems(job, "llamafactory", ("adamw",), "only adamw is translated to LLaMA-Factory's "
                                   "optimizer settings; use --backend native or trl")
        if job.optim.lr_mult != type(job.optim.lr_mult)():
            problems.append(Problem("optim.lr_mult", "llamafactory trains every parameter at one learning rate; "
                                                     "remove optim.lr_mult, or use --backend native or trl"))
        if job.train.eval_batches is not None:
            problems.append(Problem("train.eval_batches", "llamafactory evaluates the whole eval set; "
                                                          "unset train.eval_batches"))
        if job.train.on_nonfinite == "skip":
            problems.append(Problem("train.on_nonfinite", "llamafactory cannot drop a step's update; set "
                                                          "train.on_nonfinite: stop"))
        if job.model.attention == "flash_attention_2" and not host.has_gpu:
            problems.append(Problem("model.attention", "flash_attention_2 needs a GPU; use sdpa"))
        return problems

    def prepare(self, job: Job, run_dir: Path, *, dry_run: bool = False, resume: Path | None = None) -> Launch:
        run_dir = Path(run_dir).resolve()
        data_dir = run_dir / "data" / "llamafactory"
        from trainhub.data.sources import DataError

        try:
            has_eval = write_data(job, data_dir)
        except DataError as err:  # a bad record stops here, in the hub, before the child starts
            raise JobError([Problem("data", str(err))]) from None
        config = translate(job, run_dir, data_dir, has_eval=has_eval, dry_run=dry_run, resume=resume)
        path = run_dir / CONFIG
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        python = envs.python_of(NAME)
        # resume goes in the config (resume_from_checkpoint), not on the command line
        argv = child_argv(str(python or f"<{envs.setup_command(NAME)}>"), "trainhub.runners.llamafactory.child",
                          run_dir, "--config", str(path), dry_run=dry_run)
        env = {"PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false", "DISABLE_VERSION_CHECK": "1",
               "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", **envs.child_env(NAME)}
        return Launch(argv=argv, cwd=run_dir, env=env)

    def optimizer_lines(self, job: Job) -> list[str]:
        """optim adamw_torch is the transformers Trainer's own AdamW (no custom optimizer is asked of
        LLaMA-Factory): two groups by name, one learning rate; check() refuses optim.lr_mult."""
        return [f"llamafactory: the transformers Trainer's AdamW (optim adamw_torch), one learning rate "
                f"(optim.lr {job.optim.lr:g}) for every trained parameter, in two groups: weight_decay "
                f"{job.optim.weight_decay:g} on all but biases and norms, 0 on those; no per-group multipliers"]

    def plan_lines(self, job: Job, dry_run: bool = False) -> list[str]:
        """What `plan` shows after prepare(): LLaMA-Factory's own config, as written for the child."""
        path = Path(job.output_dir).resolve() / CONFIG
        return [f"{path}:", *path.read_text().rstrip().splitlines()]


def write_data(job: Job, data_dir: Path) -> bool:
    """The job's train (and eval) records as LLaMA-Factory files; returns whether there is an eval set."""
    from trainhub.data.sources import load_records
    from trainhub.data.writers import write_llamafactory

    method = job.method.type
    kind = {"pretrain": "text", "sft": "messages", "dpo": "preference", "orpo": "preference", "kto": "kto"}[method]
    if (data_dir / "dataset_info.json").exists():
        (data_dir / "dataset_info.json").unlink()
    splits = [("train", DATASET)] + ([("eval", EVAL_DATASET)] if job.data.has_eval else [])
    stats: dict[str, int] = {}
    for split, name in splits:
        loaded = load_records(job.data, split, job.seed, method)
        items = _items(loaded.items, kind)
        write_llamafactory(data_dir, name, items, kind)
        stats.update({f"{split}_{k}": v for k, v in loaded.stats.items()}, **{f"{split}_examples": len(items)})
    (data_dir / "stats.json").write_text(json.dumps(stats) + "\n")
    return job.data.has_eval


def _items(records: list, kind: str) -> list:
    """Records as the writer takes them; for KTO each preference pair gives a desirable example (prompt +
    chosen) and an undesirable one (prompt + rejected), as the trl backend reads them."""
    if kind == "text":
        return [r.text for r in records]
    if kind == "messages":
        return [r.messages for r in records]
    if kind == "kto":
        return [KtoExample(r.where, r.prompt, answer, label) for r in records
                for answer, label in ((r.chosen, True), (r.rejected, False))]
    return list(records)


@dataclass(frozen=True)
class KtoExample:
    where: str
    prompt: str | list
    completion: str | list
    label: bool
