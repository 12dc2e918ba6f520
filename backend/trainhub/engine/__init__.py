"""The native engine: a plain PyTorch training loop (loop.py) and the parts it calls."""
