"""`run` keeps the collector off what lives for the whole run (see `settle_heap`)."""

from __future__ import annotations

import gc

from pivoicectl.commands.run import settle_heap


def test_what_exists_before_the_conversation_is_frozen_and_new_objects_are_not():
    try:
        before = gc.get_freeze_count()
        settle_heap()
        frozen = gc.get_freeze_count()
        assert frozen > before  # the imports' objects: never walked again
        young = [[n] for n in range(1000)]
        assert gc.get_freeze_count() == frozen  # later allocations are collected as usual
        assert gc.is_tracked(young[0])
    finally:
        gc.unfreeze()
