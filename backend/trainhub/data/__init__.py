"""Data: reading files, tokenizers, pretraining blocks, chat encoding with loss masks, batching."""
