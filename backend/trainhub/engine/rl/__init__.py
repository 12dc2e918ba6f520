"""The native engine's GRPO family: losses (loss.py), advantages (advantages.py), the KV-cache sampler
(rollout.py), chunked token log-probabilities (logprobs.py), prompts and rewards (prompts.py) and the
loop (train.py)."""
