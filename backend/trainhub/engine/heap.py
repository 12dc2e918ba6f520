"""Python's garbage collector and the training loop.

CPython's cyclic collector runs a full (generation 2) collection from time to time, and a full
collection walks every tracked object of the process. A backend's process holds about a million of
them once torch, transformers and the model are loaded (the unsloth child on the 1B-shaped bench job:
987,607), and one full collection of that heap took about 350 ms on the GPU machine's host (6 of them,
2.1 s in all, in one 15-step run, in the warm-up steps where Unsloth compiles; research/results/
unsloth.md, seventh session). Whichever step allocates the object that crosses the threshold pays for
it, and calls of gc.collect() inside upstream libraries pay the same. With the freeze below, that run's
full collections cost 0.7-0.9 s in all; the measured steps after the warm-up held no full collection
with or without it.

So after setup, before the first step, the loop collects once and freezes what survived
(gc.freeze): those objects move to a permanent generation that no collection walks again. Collection
stays on for everything allocated later, so cycles made while training are still freed; a frozen
object is still freed by its reference count, and only a cycle among setup objects that becomes
garbage later is left until the process ends. The same call also keeps forked data workers from
touching (and so copying) the pages of the parent's objects when a collection would have walked them.
"""

from __future__ import annotations

import gc


def freeze_setup() -> int:
    """Collect once, then freeze every object alive now; returns how many are frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
