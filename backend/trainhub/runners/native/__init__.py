"""The `native` backend: trainhub's own engine. runner.py is all of it here: the job is the engine's own
config (no translate.py), and the child is the engine's entry, `python -m trainhub.engine` (runners/base.py
says why).
"""
