"""Runner `llamafactory`: LLaMA-Factory's `run_exp`, in an environment of its own (trainhub.envs).

prepare() loads the job's data through trainhub's own loader (the same records, split and
weights as every backend), hands it to LLaMA-Factory with the data layer's writers
(data/llamafactory/dataset_info.json, absolute paths), writes LLaMA-Factory's own config
(run_dir/llamafactory.yaml, what `plan` prints) and launches `python -m
trainhub.runners.llamafactory_child` with that environment's python. The child calls
`run_exp(config, callbacks=[trainhub's metrics callback])`.

The translation, key by key, is the table in docs/backends.md; what LLaMA-Factory cannot do is a
problem from check(), never a silent drop.
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
from trainhub.runners.base import Launch, child_argv, optim_problems

NAME = "llamafactory"
STAGES = {"pretrain": "pt", "sft": "sft", "dpo": "dpo", "orpo": "dpo", "kto": "kto"}
"""job method -> LLaMA-Factory stage (ORPO is its dpo stage with pref_loss orpo)."""
TEMPLATES = {"chatml": "chatml", "qwen2": "qwen", "llama3": "llama3", "mistral": "mistral", "gemma": "gemma"}
"""trainhub's built-in chat templates -> LLaMA-Factory's templates of the same rendering. null: none is
passed, and LLaMA-Factory parses the tokenizer's own chat template (as the native engine uses it)."""
OTHER_BACKENDS = {"grpo": "trl"}
"""Methods LLaMA-Factory cannot train, and who can."""
DATASET = "trainhub_train"
EVAL_DATASET = "trainhub_eval"


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
        path = run_dir / "llamafactory.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        python = envs.python_of(NAME)
        # resume goes in the config (resume_from_checkpoint), not on the command line
        argv = child_argv(str(python or f"<{envs.setup_command(NAME)}>"), "trainhub.runners.llamafactory_child",
                          run_dir, "--config", str(path), dry_run=dry_run)
        env = {"PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false", "DISABLE_VERSION_CHECK": "1",
               "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", **envs.child_env(NAME)}
        return Launch(argv=argv, cwd=run_dir, env=env)

    def plan_lines(self, job: Job, dry_run: bool = False) -> list[str]:
        """What `plan` shows after prepare(): LLaMA-Factory's own config, as written for the child."""
        path = Path(job.output_dir).resolve() / "llamafactory.yaml"
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


def translate(job: Job, run_dir: Path, data_dir: Path, *, has_eval: bool, dry_run: bool = False,
              resume: Path | None = None) -> dict:
    """LLaMA-Factory's training arguments for the job (every key it reads, as its YAML names them)."""
    a, t, o = job.adapter, job.train, job.optim
    cfg: dict = {
        "model_name_or_path": str(Path(job.model.path).expanduser().resolve())
        if Path(job.model.path).expanduser().exists() else job.model.path,
        "trust_remote_code": job.model.trust_remote_code,
        "flash_attn": {"sdpa": "sdpa", "eager": "disabled", "flash_attention_2": "fa2"}[job.model.attention],
        "stage": STAGES[job.method.type],
        "do_train": True,
        "finetuning_type": a.type,
    }
    if a.type == "lora":
        cfg.update(lora_rank=a.rank, lora_alpha=a.alpha, lora_dropout=a.dropout,
                   lora_target="all" if a.targets == "all-linear" else ",".join(a.targets))
    cfg.update(dataset=DATASET, dataset_dir=str(data_dir), cutoff_len=job.data.max_length,
               overwrite_cache=True, preprocessing_num_workers=1)
    if job.data.template is not None:
        cfg["template"] = TEMPLATES[job.data.template]
    cfg.update(_method(job))
    if job.method.type == "sft":
        cfg["train_on_prompt"] = job.method.train_on == "all"
        if job.data.packing:  # per-conversation attention, as the native engine packs
            cfg.update(packing=True, neat_packing=True)
    if has_eval and not dry_run:  # a dry run is one step and no evaluation, as native's
        cfg.update(eval_dataset=EVAL_DATASET, per_device_eval_batch_size=t.micro_batch_size,
                   eval_strategy="steps" if t.eval_every else "no")
        if t.eval_every:
            cfg["eval_steps"] = t.eval_every
    s = job.schedule
    cfg.update(
        output_dir=str(run_dir / "checkpoints"), overwrite_output_dir=True, logging_steps=t.log_every,
        save_strategy="steps" if t.save_every else "no", save_total_limit=t.keep_last,
        report_to="none", disable_tqdm=True, plot_loss=False, include_num_input_tokens_seen="non_padding",
        seed=job.seed, data_seed=job.seed,
        per_device_train_batch_size=t.micro_batch_size, gradient_accumulation_steps=t.grad_accum,
        learning_rate=o.lr, adam_beta1=o.betas[0], adam_beta2=o.betas[1], adam_epsilon=o.eps,
        weight_decay=o.weight_decay, optim="adamw_torch", warmup_steps=s.warmup_steps,
        max_grad_norm=t.grad_clip if t.grad_clip is not None else 0.0,
        disable_gradient_checkpointing=not t.grad_checkpointing,
    )
    if t.save_every:
        cfg["save_steps"] = t.save_every
    if s.decay == "cosine":
        cfg.update(lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr_rate": s.min_lr_ratio})
    else:
        cfg["lr_scheduler_type"] = {"linear": "linear", "constant": "constant_with_warmup"}[s.decay]
    if dry_run:  # one optimizer step past where the run starts
        cfg["max_steps"] = 1 + (_global_step(resume) if resume is not None else 0)
    elif t.max_steps is not None:
        cfg["max_steps"] = t.max_steps
    else:
        cfg["num_train_epochs"] = t.epochs
    cfg.update(_precision(job))
    if not job.data.shuffle:
        cfg["disable_shuffling"] = True
    if resume is not None:
        cfg["resume_from_checkpoint"] = str(resume)
    return cfg


def _method(job: Job) -> dict:
    """The preference methods' own keys (LLaMA-Factory's pref_* and kto_* arguments)."""
    m = job.method
    if m.type == "dpo":
        return {"pref_beta": m.beta, "pref_loss": m.loss}
    if m.type == "orpo":
        return {"pref_beta": m.beta, "pref_loss": "orpo"}
    if m.type == "kto":
        return {"pref_beta": m.beta, "kto_chosen_weight": m.desirable_weight,
                "kto_rejected_weight": m.undesirable_weight}
    return {}


def _global_step(checkpoint: Path) -> int:
    return int(json.loads((Path(checkpoint) / "trainer_state.json").read_text())["global_step"])


def _precision(job: Job) -> dict:
    """bf16 / fp16 mixed precision on a GPU; the child turns it off on a CPU (and says so), as native does."""
    p = job.train.precision.type
    return {"bf16": p in ("bf16", "auto"), "fp16": p == "fp16"}
