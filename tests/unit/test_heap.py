"""freeze_setup: setup's objects leave the collector's walk, later cycles are still freed."""

from __future__ import annotations

import gc
import weakref

import pytest

from trainhub.engine.heap import freeze_setup


class Node:
    def __init__(self):
        self.other = None


@pytest.fixture(autouse=True)
def unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_setup_objects_are_frozen_and_not_walked():
    kept = [Node() for _ in range(1000)]
    frozen = freeze_setup()
    assert frozen == gc.get_freeze_count() and frozen >= 1000
    tracked = {id(o) for o in gc.get_objects()}
    assert not any(id(node) in tracked for node in kept)


def test_cycles_made_after_setup_are_still_collected():
    freeze_setup()
    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b
    gc.collect()
    assert gone() is None


def test_frozen_object_is_still_freed_by_its_reference_count():
    node = Node()
    freeze_setup()
    gone = weakref.ref(node)
    del node
    assert gone() is None
