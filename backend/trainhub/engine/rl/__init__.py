"""The native engine's GRPO family: losses (loss.py) and advantages (advantages.py); rollout and the loop come later."""
