"""Turning what a backend leaves behind into a Hugging Face model folder."""
