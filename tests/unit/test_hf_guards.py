"""The upstream internals trainhub.hf's patches touch are still where they were (hf/guard.py).

Each patch module's TOUCHES names what it relies on: a Trainer method's parameters, the call in the
Trainer's loop that it takes over, an attribute it reads or resets, torch's fused AdamW reading
`found_inf`. When an upstream release moves one, the test of that entry fails here, saying what moved
and what the patch does with it: re-read the upstream code, mend the patch, then its TOUCHES and TESTED.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import trainhub.hf
from trainhub.hf.guard import HfInternalMoved, Internal, guard, untested, upstream_source

NOT_PATCHES = {"guard", "callback"}  # the guard itself; the callback uses the public callback API only
PATCHES = [importlib.import_module(f"trainhub.hf.{m.name}") for m in pkgutil.iter_modules(trainhub.hf.__path__)
           if m.name not in NOT_PATCHES]
TOUCHES = [(p.__name__, internal) for p in PATCHES
           for internal in (*p.TOUCHES, *getattr(p, "INJECT_TOUCHES", ()))]


def test_every_patch_module_declares_its_guard():
    assert {p.__name__.rsplit(".", 1)[1] for p in PATCHES} == {"deferred", "nonfinite", "tokens", "flops"}
    for patch in PATCHES:
        assert patch.TESTED and "transformers" in patch.TESTED, patch.__name__
        assert isinstance(patch.REQUIRED, bool) and patch.TOUCHES, patch.__name__


@pytest.mark.parametrize("where,internal", TOUCHES, ids=[f"{w.rsplit('.', 1)[1]}:{i.name}" for w, i in TOUCHES])
def test_the_internal_has_not_moved(where, internal):
    moved = internal.moved()
    assert not moved, f"{where} relies on an upstream internal that moved:\n  " + "\n  ".join(moved)


@pytest.mark.parametrize("patch", PATCHES, ids=lambda p: p.__name__.rsplit(".", 1)[1])
def test_the_installed_versions_were_tested(patch):
    off = untested(patch.TESTED)
    assert not off, (f"{patch.__name__} runs here with {', '.join(off)}: run the hf tests (and tests/gpu in "
                     f"Unsloth's environment), then widen its TESTED")


def test_the_trainer_calls_what_the_patches_replace_as_they_expect():
    """The signatures the patches wrap, spelled out (TOUCHES checks them too): the loop calls
    training_step(model, inputs, num_items_in_batch) and floating_point_ops(inputs)."""
    from transformers import Trainer

    assert list(inspect.signature(Trainer.training_step).parameters)[:3] == ["self", "model", "inputs"]
    assert list(inspect.signature(Trainer.floating_point_ops).parameters) == ["self", "inputs"]
    assert list(inspect.signature(Trainer.compute_loss).parameters)[:3] == ["self", "model", "inputs"]


GONE = Internal("transformers.Trainer.no_such_method", why="a test")


def test_a_required_patch_whose_internal_moved_is_refused():
    with pytest.raises(HfInternalMoved, match=r"a patch: transformers.Trainer.no_such_method is gone \(a test\)"):
        guard("a patch", {"transformers": ("5.0.0", "9.0.0")}, (GONE,), required=True, notes=[])


def test_an_optional_patch_whose_internal_moved_is_left_out_with_a_note():
    notes: list[str] = []
    assert not guard("a speed-up", {"transformers": ("5.0.0", "9.0.0")}, (GONE,), required=False, notes=notes)
    assert len(notes) == 1 and "no_such_method is gone" in notes[0] and "not applied" in notes[0]


def test_untested_versions_are_applied_with_a_note():
    notes: list[str] = []
    assert guard("a patch", {"transformers": ("0.0.1", "0.0.2")}, (), required=True, notes=notes)
    assert len(notes) == 1 and "tested 0.0.1 to 0.0.2" in notes[0]


def test_a_parameter_that_went_away_is_named():
    moved = Internal("transformers.Trainer.training_step", params=("model", "batch")).moved()
    assert len(moved) == 1 and "takes no batch" in moved[0]


def test_a_source_text_is_held_against_the_upstreams_own_code_only():
    from transformers import Trainer

    class Rewritten(Trainer):  # as Unsloth's generated trainers: code from another file
        def floating_point_ops(self, inputs):
            return 0

    assert upstream_source(Trainer.floating_point_ops, "transformers") is not None
    assert upstream_source(Rewritten.floating_point_ops, "transformers") is None
    internal = Internal("transformers.Trainer.floating_point_ops", source=("6 * inputs[main_input].numel()",))
    trainer = Rewritten.__new__(Rewritten)
    assert internal.moved((trainer,)) == []  # its own code: parameters only
    assert Internal("transformers.Trainer.floating_point_ops", params=("batch",)).moved((trainer,))
