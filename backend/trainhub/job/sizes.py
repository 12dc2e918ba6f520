"""Sizes a job implies, the same for every backend: the longest sequence the model sees, and the tokens
an optimizer step trains on at most (the start row's `tokens_per_step`).

    longest_sequence   data.max_length; GRPO: + method.max_new_tokens (prompt + completion)
    tokens_per_step    micro_batch_size x grad_accum x processes x longest_sequence x sequences per
                       example (a DPO or ORPO pair is two sequences)

Pure functions of the job: jobfile's position-table check, the translations (Unsloth's
max_seq_length) and every child's start row read them here.
"""

from __future__ import annotations

from trainhub.job import Job

PAIRED = ("dpo", "orpo")
"""Methods whose example is a pair of sequences, chosen and rejected, both trained on in a step (KTO
takes each answer as an example of its own)."""


def longest_sequence(job: Job) -> int:
    """The longest sequence the job feeds the model: the prompt bound plus, for GRPO, the completion's."""
    m = job.method
    return job.data.max_length + (m.max_new_tokens if m.type == "grpo" else 0)


def tokens_per_step(job: Job, processes: int = 1) -> int:
    """Upper bound on the tokens one optimizer step trains on, over all `processes`."""
    tc = job.train
    per_example = 2 if job.method.type in PAIRED else 1
    return tc.micro_batch_size * tc.grad_accum * processes * longest_sequence(job) * per_example
