"""trainhub: one YAML job schema, one command, many LLM training stacks behind it."""

__version__ = "0.1.0"
