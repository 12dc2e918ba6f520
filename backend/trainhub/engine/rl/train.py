"""The native GRPO-family loop. Read it top to bottom: setup, restore, then per step rollout, rewards,
advantages, update; then log and save, as engine/train.py does for SFT.

One optimizer step, with C = train.micro_batch_size x train.grad_accum completions and G = group_size:

    prompts      C / G prompts from the data position (prompts.py), each repeated G times
    rollout      the policy's own weights sample a completion per row (rollout.py), returning each
                 token's log-probability: the "old" policy of the importance ratio
    rewards      method.rewards on the decoded texts, weighted and summed (prompts.py); with
                 method.dynamic_sampling (DAPO) groups whose rewards are all equal are dropped and more
                 prompts sampled until the step is full (`collect`, at most MAX_DRAWS rollouts)
    advantages   reward against its group (advantages.py, method.reward_scaling)
    reference    log-probabilities under the starting model when method.kl_beta > 0: the base with
                 the adapters switched off (LoRA), else a frozen copy of the weights made at setup
    update       grad_accum micro-batches of micro_batch_size completions: a forward over prompt +
                 completion gives the policy's log-probabilities with grad, then the algorithm's loss
                 (loss.py; its normalisers count over the whole step, so accumulation is exact), one
                 optimizer step. One update per rollout (TRL's num_iterations 1, the only value the
                 job schema has): the ratio is 1 in value and the clip bites only where rollout and
                 update numerics differ.

The same job file means the same thing under --backend trl: the prompts are rendered alike, the rewards
called alike, the algorithm table (job.GRPO_ALGORITHMS) resolved alike, and the metric rows carry the
same fields (reward_mean, reward_std, rewards by function name, kl, clip_ratio, completion_length).

Resume is exact: weights, optimizer and the data position come from the checkpoint, and each step's
sampling generator is seeded by (seed, step), so a resumed run samples what an unbroken one would.
"""

from __future__ import annotations

import copy
import itertools
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from trainhub.engine.checkpoint import load_into, save_checkpoint
from trainhub.engine.device import autocast, device_facts, pick_device, pick_precision, synchronize
from trainhub.engine.kernels import kernel_ops, resolve, with_sdpa
from trainhub.engine.model import build_tokenizer, count_model
from trainhub.engine.models import build_model
from trainhub.engine.models.attention import varlen_runs
from trainhub.engine.models.own import unwrap
from trainhub.engine.optim import build_optimizer, set_lr
from trainhub.engine.parallelize import apply_kernels
from trainhub.engine.profile import StepProfiler
from trainhub.engine.rl.advantages import group_advantages, keep_rows
from trainhub.engine.rl.logprobs import token_logprobs
from trainhub.engine.rl.loss import loss_mask, loss_spec, policy_loss
from trainhub.engine.rl.prompts import Rewards, draw, load_prompts
from trainhub.engine.rl.rollout import Rollout, Sampler, SamplingSpec
from trainhub.engine.schedule import lr_at
from trainhub.engine.state import TrainState
from trainhub.engine.step import NonFiniteStop, clip_gradients, nonfinite_verdict
from trainhub.engine.stop import StopFlag
from trainhub.engine.telemetry import Telemetry
from trainhub.export.hf import save_final
from trainhub.job import Job
from trainhub.job.sizes import longest_sequence, tokens_per_step
from trainhub.metrics import CheckpointRow, EndRow, ErrorRow, MetricLog, StartRow
from trainhub.metrics.rows import MethodStats


def train_rl(job: Job, run_dir: Path, log: MetricLog, run_id: str, *, dry_run: bool = False,
             resume: Path | None = None) -> str:
    """Run a GRPO-family job; returns 'completed' or 'interrupted'. Rows go to `log`."""
    # --- setup: seeds, device, precision, tokenizer, prompts, rewards, model, reference, optimizer, sampler
    t_start, stop, notes = time.time(), StopFlag.install(), []
    random.seed(job.seed)
    torch.manual_seed(job.seed)
    m, tc = job.method, job.train
    device = pick_device()
    precision = pick_precision(job.train.precision, device, notes)
    tokenizer = build_tokenizer(job, run_dir)
    prompts = load_prompts(job, tokenizer)
    notes += prompts.notes
    rewards = Rewards(job)
    model = build_model(job, tokenizer).to(device)
    kernels, why = resolve(getattr(job.backend, "kernels", "auto"), device)
    sdpa = getattr(job.backend, "sdpa", "auto")
    ops = with_sdpa(kernel_ops(kernels), sdpa, device, notes)
    if sdpa != "auto" and varlen_runs(device, precision.autocast_dtype):  # update_batch packs the rows
        notes.append(f"backend.sdpa {sdpa}: the update's packed rows run flash-attention's varlen kernel, which "
                     "SDPA's order does not reach")
    apply_kernels(model, ops, job.adapter.type, notes)  # the update's; the sampler runs the
    # reference ops (rollout.py) and peft's own LoRA forward (eval mode)
    notes.append(f"kernels: {kernels} ({why}) in the update's forward and backward; the sampler runs the reference ops")
    lora = hasattr(model, "disable_adapter")
    reference = None
    if m.kl_beta > 0 and not lora:  # the starting weights, before a resumed checkpoint replaces them
        reference = copy.deepcopy(unwrap(model)).requires_grad_(False).eval()
    optimizer = build_optimizer(job.optim, model, device)
    if precision.scaler:
        raise ValueError("train.precision fp16 (loss scaling) is not supported for grpo on the native backend "
                         "yet; use bf16 or fp32")
    compiled = bool(getattr(job.backend, "compile", False))
    if compiled and device.type != "cuda":
        notes.append("CPU: backend.compile ignored (the sampler's decode step is compiled on GPUs only)")
        compiled = False
    sampler = Sampler(model, SamplingSpec(m.max_new_tokens, m.temperature, m.top_p), eos_ids=[tokenizer.eos_token_id],
                      pad_id=tokenizer.pad_token_id, device=device, precision=precision, compiled=compiled,
                      prompt_tokens=job.data.max_length)
    spec, scaling = loss_spec(m), m.resolved()["reward_scaling"]
    counts = count_model(model)
    completions = tc.micro_batch_size * tc.grad_accum
    max_steps = tc.max_steps or math.ceil(len(prompts.items) * (tc.epochs or 1) * m.group_size / completions)

    # --- restore
    state = TrainState()
    if resume is not None:
        state = TrainState.from_json(load_into(resume, model, optimizer, device))
    max_steps = state.step + 1 if dry_run else max_steps
    profiler = StepProfiler(tc.profile, run_dir, device, True, first=state.step + 1, last=max_steps, notes=notes)

    log.write(StartRow(
        run_id=run_id, step=state.step, backend="native", job_hash=job.hash(), job=job.model_dump(mode="json"),
        hardware=device_facts(device), params_total=counts.params_total, params_trainable=counts.params_trainable,
        flops_per_token=counts.flops_per_token(longest_sequence(job)), precision=precision.name, max_steps=max_steps,
        tokens_per_step=tokens_per_step(job), notes=notes, data={f"train_{k}": v for k, v in prompts.stats.items()},
        resumed_from=str(resume) if resume else None))
    for note in notes:
        print(f"note: {note}", flush=True)
    telemetry = Telemetry(device, device_facts(device)["peak_flops"], counts.flops_per_token)
    window = Window()
    status, last_loss, in_a_row = "completed", None, 0
    model.train()

    while state.step < max_steps:
        # --- rollout, rewards, advantages
        lr = lr_at(state.step, peak=job.optim.lr, total=max_steps, schedule=job.schedule)
        set_lr(optimizer, lr)
        profiler.before(state.step + 1)  # the window covers the whole step: rollout, rewards, update
        generator = torch.Generator(device).manual_seed(job.seed * 1_000_003 + state.step)
        t0 = time.perf_counter()
        got = collect(sampler, tokenizer, rewards, prompts.items, job, state, generator)
        advantages = group_advantages(got.reward, m.group_size, scaling).to(device)
        out = got.out

        # --- update
        step_loss, grad_norm, finite, stats = update(model, reference, optimizer, out, advantages, spec, tc,
                                                     m.temperature, precision, device, telemetry, state)
        state.step += 1
        if not finite:
            state.nonfinite_skipped, in_a_row = state.nonfinite_skipped + 1, in_a_row + 1
            print(f"step {state.step}: non-finite loss or gradient norm; update skipped", flush=True)
        else:
            in_a_row = 0
        telemetry.step(step_loss)
        window.add(got.sampled_reward, got.by_function, stats, got.lengths, got.rollout_s, time.perf_counter() - t0)

        # --- log
        if state.step % tc.log_every == 0 or state.step == max_steps or stop.requested or not finite:
            row = telemetry.row(run_id=run_id, step=state.step, lr=lr, grad_norm=grad_norm, tokens=state.tokens,
                                epoch=state.epoch + state.index / len(prompts.items), skipped=state.nonfinite_skipped)
            row.method = window.stats()
            last_loss = row.loss
            log.write(row)
        profiler.after(state.step, last=state.step == max_steps or stop.requested)
        why = nonfinite_verdict(finite, tc, in_a_row)
        if why:
            message = (f"non-finite loss or gradient at step {state.step} ({why}); the run stops without saving, "
                       f"the last good checkpoint is kept")
            log.write(ErrorRow(run_id=run_id, step=state.step, message=message))
            raise NonFiniteStop(message, state.step)
        if dry_run:
            break

        # --- save (the last step too: final/ is made from it, and a finished run can be extended)
        last = state.step == max_steps
        if (tc.save_every and state.step % tc.save_every == 0) or stop.requested or last:
            path = save_checkpoint(run_dir, state.step, model, optimizer, {**state.to_json(), "job_hash": job.hash()},
                                   job.model_dump(mode="json"), tc.keep_last)
            log.write(CheckpointRow(run_id=run_id, step=state.step, path=str(path)))
        if stop.requested:
            status = "interrupted"
            break

    # --- end
    rewards.close()
    if status == "completed" and not dry_run:
        final = save_final(model, tokenizer, run_dir, job)
        log.write(CheckpointRow(run_id=run_id, step=state.step, path=str(final)))
    synchronize(device)
    log.write(EndRow(run_id=run_id, step=state.step, status=status, wall_s=time.time() - t_start,
                     tokens=state.tokens, final_loss=last_loss, nonfinite_skipped=state.nonfinite_skipped))
    return status


MAX_DRAWS = 8
"""Dynamic sampling: rollouts per step at most; a step that still lacks groups with a reward spread trains on
the ones it has (DAPO samples until full; a cap keeps a solved or hopeless task from spinning forever)."""


@dataclass
class Collected:
    out: Rollout
    """The completions the update trains on: every row sampled, or (dynamic sampling) the groups kept."""
    reward: torch.Tensor
    """[rows of out] their rewards (CPU float32)."""
    sampled_reward: torch.Tensor
    """Every completion sampled this step: what the row's reward_mean and reward_std describe."""
    by_function: dict[str, float]
    lengths: list[int]
    rollout_s: float


def collect(sampler: Sampler, tokenizer, rewards: Rewards, prompts: list, job: Job, state: TrainState,
            generator: torch.Generator) -> Collected:
    """Sample and score one step's completions, moving the data position. With method.dynamic_sampling
    (DAPO), groups whose rewards are all equal are dropped and more prompts sampled, up to MAX_DRAWS."""
    m, tc = job.method, job.train
    n_rows = tc.micro_batch_size * tc.grad_accum
    kept, sampled, means, lengths, rollout_s = [], [], [], [], 0.0
    for _ in range(MAX_DRAWS if m.dynamic_sampling else 1):
        batch, state.epoch, state.index = draw(prompts, n_rows // m.group_size, state.epoch, state.index, job.seed,
                                               job.data.shuffle)
        rows = [p for p in batch for _ in range(m.group_size)]
        t0 = time.perf_counter()
        out = sampler.sample([p.ids for p in rows], generator)
        n = out.lengths.tolist()  # sync
        rollout_s += time.perf_counter() - t0
        ids = [c[:k] for c, k in zip(out.completion_ids.tolist(), n, strict=True)]
        reward, by_function = rewards(rows, tokenizer.batch_decode(ids, skip_special_tokens=True), ids)
        sampled.append(reward)
        means.append(by_function)
        lengths += n
        if not m.dynamic_sampling:
            return Collected(out, reward, reward, by_function, lengths, rollout_s)
        keep = keep_rows(reward, m.group_size)
        kept.append((out.rows(keep.to(out.completion_ids.device)), reward[keep]))
        if sum(len(r) for _, r in kept) >= n_rows:
            break
    out = Rollout.cat([o for o, _ in kept], sampler.pad_id).rows(slice(0, n_rows))
    average = {k: sum(d[k] for d in means) / len(means) for k in means[0]}
    return Collected(out, torch.cat([r for _, r in kept])[:n_rows], torch.cat(sampled), average, lengths, rollout_s)


def update(model, reference, optimizer, out: Rollout, advantages, spec, tc, temperature, precision, device,
           telemetry, state) -> tuple[torch.Tensor, torch.Tensor, bool, dict[str, torch.Tensor]]:
    """The step's micro-batches forward and backward through the algorithm's loss, then clip and step.
    Returns (step loss, gradient norm before clipping, whether the update was applied, summed metrics)."""
    mask = loss_mask(out.completion_mask.float(), out.truncated, spec)
    step_tokens, step_sequences = mask.sum(), mask.shape[0]
    step_loss = torch.zeros((), device=device)
    stats: dict[str, torch.Tensor] = {}
    micro = tc.micro_batch_size
    packed = varlen_runs(device, precision.autocast_dtype)  # update_batch: no masks, no pads where it runs
    for lo in range(0, mask.shape[0], micro):
        part = slice(lo, lo + micro)
        batch = update_batch(out, part, packed)
        ref = None
        if spec.kl_beta > 0:
            with torch.no_grad():
                if reference is None:  # LoRA: the base model is the model with its adapters off
                    with model.disable_adapter():
                        ref = completion_logprobs(model, batch, temperature, precision, device)
                else:
                    ref = completion_logprobs(reference, batch, temperature, precision, device)
        logp = completion_logprobs(model, batch, temperature, precision, device)
        loss, metrics = policy_loss(logp, out.logprobs[part], advantages[part], mask[part], spec=spec, ref_logp=ref,
                                    step_tokens=step_tokens, step_sequences=step_sequences)
        loss.backward()
        step_loss += loss.detach()
        telemetry.micro(batch.tokens, batch.width)
        state.tokens += batch.tokens
        for k, v in metrics.items():
            stats[k] = stats.get(k, 0) + v / math.ceil(mask.shape[0] / micro)
    grad_norm = clip_gradients([p for g in optimizer.param_groups for p in g["params"]], tc.grad_clip or math.inf)
    finite = bool(torch.isfinite(step_loss) & torch.isfinite(grad_norm))  # sync
    if finite:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return step_loss, grad_norm, finite, stats


@dataclass
class UpdateBatch:
    """One micro-batch of prompt + completion rows as the update's forward takes it (`update_batch`)."""

    inputs: dict
    """The model's keyword arguments: input_ids, position_ids and either a 4-D mask or varlen cu_seq_lens."""
    predict: torch.Tensor
    """[n] indices into the forward's hidden states, flattened to [rows x width, H]: the position before each
    completion token that is scored, i.e. the one whose logits predict it."""
    targets: torch.Tensor
    """[n] those completion tokens."""
    shape: tuple[int, int]
    """[b, N]: the completion slots of these rows."""
    scored: torch.Tensor | None
    """[b, N] bool: which slots the n log-probabilities fill (the rest are 0); None: every slot, in order."""
    tokens: int
    """Real tokens (prompt and completion) in the rows: the tokens/s count."""
    width: int
    """The longest row: the attention term of the FLOP count."""


def update_batch(out: Rollout, rows: slice, packed: bool) -> UpdateBatch:
    """Rows `rows` of a rollout for the update's forward, in one of two layouts with the same result.

    packed: each row's real tokens (its prompt without the left padding, its completion up to and including
    the first EOS) laid end to end as one row [1, n] with varlen cu_seq_lens, so flash attention's varlen
    kernel runs every row as its own causal sequence: no [T, T] mask and no compute on pads. Only the
    completion tokens the loss can count are scored (after the EOS the mask is 0 and so is the
    log-probability). Used where the varlen kernel runs (CUDA, bf16/fp16; attention.varlen_runs).
    padded: [b, P + N] as the sampler laid them out, under a 4-D bool mask that keeps pads out of every real
    token's keys (a pad sees itself, so no row of the mask is empty); positions count real tokens, as the
    sampler's did. Every completion slot is scored."""
    prompt_mask, completion_mask = out.prompt_mask[rows].bool(), out.completion_mask[rows].bool()
    prompt_lengths, completion_lengths = torch.stack([prompt_mask.sum(-1), completion_mask.sum(-1)]).tolist()  # sync
    tokens = sum(prompt_lengths) + sum(completion_lengths)
    packed = packed and min(prompt_lengths) > 0  # a token before the first completion token predicts it
    ids = torch.cat([out.prompt_ids[rows], out.completion_ids[rows]], 1)
    b, width = ids.shape[0], out.prompt_ids.shape[1]
    real = torch.cat([prompt_mask, completion_mask if packed else torch.ones_like(completion_mask)], 1)
    positions = (real.long().cumsum(-1) - 1).clamp(min=0)
    if packed:
        lengths = [p + c for p, c in zip(prompt_lengths, completion_lengths, strict=True)]
        cu = torch.tensor([0, *itertools.accumulate(lengths)], dtype=torch.int32, device=ids.device)
        at = real.flatten().long().cumsum(0).view(real.shape) - 1  # each real token's index in the packed row
        inputs = {"input_ids": ids[real][None], "position_ids": positions[real][None], "cu_seq_lens_q": cu,
                  "cu_seq_lens_k": cu, "max_length_q": max(lengths), "max_length_k": max(lengths)}
        return UpdateBatch(inputs, at[:, width:][completion_mask] - 1, out.completion_ids[rows][completion_mask],
                           tuple(completion_mask.shape), completion_mask, tokens, max(lengths))
    n = ids.shape[1]
    causal = torch.ones(n, n, dtype=torch.bool, device=ids.device).tril()
    own = torch.eye(n, dtype=torch.bool, device=ids.device)
    attn = ((causal[None] & real[:, None, :]) | own[None])[:, None]
    predict = (torch.arange(b, device=ids.device)[:, None] * n + torch.arange(width - 1, n - 1, device=ids.device))
    return UpdateBatch({"input_ids": ids, "position_ids": positions, "attention_mask": attn}, predict.flatten(),
                       out.completion_ids[rows].flatten(), tuple(completion_mask.shape), None, tokens, n)


def completion_logprobs(model, batch: UpdateBatch, temperature: float, precision, device) -> torch.Tensor:
    """log_softmax(logits / T) of each scored completion token, as [b, N] float32 (0 where not scored),
    through the model's forward."""
    with autocast(device, precision):
        hidden = model(**batch.inputs)
        hidden = hidden.reshape(-1, hidden.shape[-1]).index_select(0, batch.predict)
        # chunked over tokens: the [n, vocab] logits never exist whole (engine/rl/logprobs.py)
        logp = token_logprobs(hidden, unwrap(model).head_weight, batch.targets, temperature)
    if batch.scored is None:
        return logp.view(batch.shape)
    return torch.zeros(batch.shape, dtype=logp.dtype, device=logp.device).masked_scatter(batch.scored, logp)


class Window:
    """The RL quantities of the steps since the last train row, averaged into MethodStats."""

    def __init__(self):
        self._reset()

    def _reset(self) -> None:
        self.rewards, self.lengths, self.by_function, self.metrics = [], [], [], []
        self.rollout_s = self.step_s = 0.0

    def add(self, reward, by_function, metrics, lengths, rollout_s, step_s) -> None:
        self.rewards.append(reward)
        self.by_function.append(by_function)
        self.metrics.append({k: float(v) for k, v in metrics.items()})  # sync
        self.lengths += lengths
        self.rollout_s += rollout_s
        self.step_s += step_s

    def stats(self) -> MethodStats:
        rewards = torch.cat(self.rewards)

        def mean(values: list[float]) -> float | None:
            values = [v for v in values if math.isfinite(v)]
            return sum(values) / len(values) if values else None

        def metric(key: str) -> float | None:
            return mean([d[key] for d in self.metrics if key in d])

        by_function = {name: mean([d[name] for d in self.by_function]) for name in self.by_function[0]}
        clipped = [metric("clip_ratio/low"), metric("clip_ratio/high")]
        out = MethodStats(
            reward_mean=float(rewards.mean()), reward_std=float(rewards.std()) if rewards.numel() > 1 else 0.0,
            rewards={name: v for name, v in by_function.items() if v is not None}, kl=metric("kl_mean"),
            clip_ratio=None if None in clipped else sum(clipped),
            completion_length=sum(self.lengths) / len(self.lengths),
            rollout_tokens_per_s=sum(self.lengths) / max(self.rollout_s, 1e-9),
            rollout_share=self.rollout_s / max(self.step_s, 1e-9))
        self._reset()
        return out
