"""Which training-example records the learner skips, and why: each bad kind by name."""

from __future__ import annotations

import json

import pytest

from learner.example_check import Skipped, decode_example
from recoil.core.records import HistoryItem, TrainingExample

GOOD = TrainingExample(
    event_id="e1", user_id="u1", timestamp=100.0,
    history=(HistoryItem("i0", "c0", "k0", False, 3, 1, 90.0),),
    label_item_id="i1", label_creator_id="c1", label_cluster_id=None,
    label_kind="positive", label_weight=1.0,
)  # fmt: skip


def _with(**changes: object) -> bytes:
    obj = GOOD.to_dict()
    obj.update(changes)
    return json.dumps(obj).encode()


def _row(**changes: object) -> list[object]:
    row = dict(zip(("item", "creator", "cluster", "disliked", "dwell", "gap", "ts"),
                   GOOD.history[0].to_row(), strict=True))  # fmt: skip
    row.update(changes)
    return list(row.values())


def test_a_good_example_decodes() -> None:
    assert decode_example(GOOD.to_json(), max_bytes=10_000, max_history=10) == GOOD


BAD: list[tuple[bytes | None, str, str]] = [
    (None, "undecodable", "empty"),
    (b"{not json", "undecodable", "JSONDecodeError"),
    (b"\xff\xfe", "undecodable", ""),
    (b"[" * 3000 + b"]" * 3000, "undecodable", "nested too deeply"),
    (b"[1, 2]", "undecodable", ""),
    (b'"a string"', "undecodable", ""),
    (_with(label_kind="like"), "undecodable", "label_kind"),
    (_with(history=[["i", "c", None, 0, 1e400, 0, 1.0]]), "undecodable", "Overflow"),
    (_with(label_weight=float("nan")), "invalid", "label_weight"),
    (_with(label_weight=-1.0), "invalid", "label_weight"),
    (_with(timestamp=float("inf")), "invalid", "timestamp"),
    (_with(label_item_id=""), "invalid", "label_item_id"),
    (_with(user_id=7), "invalid", "user_id"),
    (_with(history=[_row(dwell=6)]), "invalid", "dwell_bucket 6"),
    (_with(history=[_row(gap=-1)]), "invalid", "gap_bucket -1"),
    (_with(history=[_row(item=5)]), "invalid", "item_id"),
    (_with(history=[_row(cluster=3)]), "invalid", "cluster_id"),
    (_with(history=[_row()] * 11), "oversized", "history of 11 items"),
    (GOOD.to_json() + b" " * 10_000, "oversized", "bytes, the limit is 10000"),
]


@pytest.mark.parametrize(("value", "reason", "fragment"), BAD)
def test_bad_records_are_skipped_with_a_reason(
    value: bytes | None, reason: str, fragment: str
) -> None:
    result = decode_example(value, max_bytes=10_000, max_history=10)
    assert isinstance(result, Skipped)
    assert result.reason == reason and fragment in result.detail
