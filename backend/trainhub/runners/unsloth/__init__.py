"""The `unsloth` backend: Unsloth's FastLanguageModel + TRL's trainers, in Unsloth's own environment.

runner.py     the Runner: check, prepare, plan (the hub's side; no torch, no Unsloth)
translate.py  job -> Unsloth's two calls and the TRL trainer's config (pure)
child.py      `<unsloth env python> -m trainhub.runners.unsloth.child`: imports Unsloth first, then
              loads, trains and saves (with the trl backend's data, trainer pieces and hf/ patches)

Nothing is imported here: `-m trainhub.runners.unsloth.child` runs this file before the child's own
`import unsloth`, which must come before transformers, trl and peft are imported.
"""
