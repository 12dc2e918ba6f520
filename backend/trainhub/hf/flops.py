"""The Trainer's FLOPs count taken once, out of every micro-batch, with the same value.

`Trainer.floating_point_ops` counts the model's parameters again for every micro-batch, a walk over every
module (1,337 with LoRA on the 1B shape); `skip_module_walks(trainer)` replaces it on the instance with
the same formula over a count taken once, as the model does not change shape while training. The other
per-step walks, clip and zero_grad over `model.parameters()`, are Unsloth's to skip (the unsloth child's
unsloth_fast_grads); `model.train()` in every training_step stays, as it must reach every module in case
something switched one to eval mode. On the 2-core dev machine the Trainer added 0.5-4.7 ms of host time
per step over a hand loop at this module count, and counting once took 0.2-2.3 ms of it away (two runs of
research/trainer_host_overhead.py; research/results/unsloth.md, eighth session).

A speed-up only, so not REQUIRED (hf/guard.py): where it moved, the Trainer counts as it always did.
"""

from __future__ import annotations

from trainhub.hf.guard import Internal, guard

TESTED = {"transformers": ("5.17.0", "5.23.0")}
"""transformers 5.23 (CPU tests), 5.17 (Unsloth's environment, GPU tests)."""
REQUIRED = False
TOUCHES = (
    Internal("transformers.Trainer.floating_point_ops", params=("inputs",),
             source=('getattr(self.model, "main_input_name", "input_ids")',
                     "6 * inputs[main_input].numel() * self.model.num_parameters(exclude_embeddings=True)"),
             why="replaced on the instance by the same formula over a parameter count taken once"),
    Internal("transformers.Trainer._run_epoch", source=("self.floating_point_ops(inputs)",),
             why="the loop's call that the replacement answers"),
)


def skip_module_walks(trainer, notes: list[str] | None = None) -> bool:
    """Replace the trainer's floating_point_ops (see the module docstring); False where the guard declines."""
    if not guard("hf/flops.py (the FLOPs count taken once)", TESTED, TOUCHES, required=REQUIRED, on=(trainer,),
                 notes=notes):
        return False
    model = trainer.model
    main = getattr(model, "main_input_name", "input_ids")
    count: list[int] = []

    def floating_point_ops(inputs) -> int:
        if main not in inputs or not hasattr(model, "num_parameters"):
            return 0
        if not count:
            count.append(model.num_parameters(exclude_embeddings=True))
        return 6 * inputs[main].numel() * count[0]

    trainer.floating_point_ops = floating_point_ops
    return True
