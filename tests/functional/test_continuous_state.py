"""The learner's bookkeeping: de-duplication window, lineage rollback, config checks."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from learner.continuous import LearnerConfig, rollback_lineage
from learner.kafka_source import SeenIds, SourceConfig


def test_seen_ids_remember_a_bounded_window_in_order() -> None:
    seen = SeenIds(3, ["a", "b"])
    assert seen.add("c") and not seen.add("a")
    assert seen.add("d")  # evicts "a", the oldest
    assert list(seen) == ["b", "c", "d"] and len(seen) == 3
    assert "a" not in seen and seen.add("a")


def test_rollback_cuts_the_lineage_to_the_checkpoint(tmp_path: Path) -> None:
    lineage = tmp_path / "trained.jsonl"
    entries = [{"step": s, "event_ids": [f"e{s}"]} for s in (1, 2, 3)]
    lines = [json.dumps(e) + "\n" for e in entries]
    lineage.write_text("".join(lines))
    kept = len(lines[0].encode())
    assert rollback_lineage(tmp_path, kept) == 2
    assert lineage.read_text() == lines[0]
    assert (tmp_path / "rolled_back.jsonl").read_text() == "".join(lines[1:])
    assert rollback_lineage(tmp_path, kept) == 0  # nothing more to cut
    assert rollback_lineage(tmp_path / "absent", 0) == 0


LEARNER = partial(LearnerConfig, store=Path("s"), checkpoint_dir=Path("c"))


@pytest.mark.parametrize(
    ("config", "kwargs", "message"),
    [
        (LEARNER, {"arm": "nope"}, "unknown arm"),
        (LEARNER, {"snapshot_every_steps": 0}, "snapshot_every_steps"),
        (LEARNER, {"snapshot_every_seconds": 0.0}, "snapshot_every_seconds"),
        (LEARNER, {"max_steps": 0}, "max_steps"),
        (LEARNER, {"softmax": "approximate"}, "softmax"),
        (SourceConfig, {"topic": ""}, "topic"),
        (SourceConfig, {"batch_size": 0}, "batch_size"),
        (SourceConfig, {"batch_timeout_s": 0.0}, "batch_timeout_s"),
        (SourceConfig, {"dedupe_window": 0}, "dedupe_window"),
    ],
    ids=lambda value: getattr(getattr(value, "func", value), "__name__", None),  # the class
)
def test_a_bad_setting_says_what_to_fix(
    config: Callable[..., object], kwargs: dict[str, object], message: str
) -> None:
    """The learner's config and its source's: a bad value fails with one naming it."""
    with pytest.raises(ValueError, match=message):
        config(**kwargs)
