"""The learner's per-batch item metadata update leaves exactly what
``learner.snapshot.update_items_meta`` leaves, changed creators and clusters included."""

from __future__ import annotations

import dataclasses

from learner.snapshot import ItemMeta, update_items_meta
from learner.stream_training import update_items_meta_fast
from tests.unit.test_learner_example_decoder import _examples


def test_the_fast_update_leaves_the_same_metadata() -> None:
    examples = _examples()
    # an item whose cluster and creator change mid-stream: the newest must win in both
    moved = [
        dataclasses.replace(e, label_cluster_id="moved", label_creator_id="c-new")
        if e.label_item_id == "i3" and n > len(examples) // 2
        else e
        for n, e in enumerate(examples)
    ]
    for batch in (examples, moved, moved[::-1]):
        expected: dict[str, ItemMeta] = {"i0": ItemMeta("old", None)}
        got = dict(expected)
        update_items_meta(expected, batch)
        update_items_meta_fast(got, batch)
        assert got == expected
        assert list(got) == list(expected)  # insertion order too (snapshots list it)
