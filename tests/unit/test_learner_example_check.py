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


def test_non_ascii_ids_that_are_utf8_decode() -> None:
    value = _with(user_id="ü\u4e2d", history=[_row(item="\U0001f600", cluster="é")])
    example = decode_example(value, max_bytes=10_000, max_history=10)
    assert isinstance(example, TrainingExample)
    assert example.user_id == "ü中" and example.history[0].item_id == "\U0001f600"


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
    # a lone surrogate (JSON's \ud800 escape) is no UTF-8 text: the worker never writes one
    (_with(user_id="u\ud800"), "invalid", "user_id must be a non-empty UTF-8 string"),
    (_with(label_item_id="\udfff"), "invalid", "label_item_id"),
    (_with(label_cluster_id="k\ud800"), "invalid", "label_cluster_id"),
    (_with(history=[_row(creator="\ud800")]), "invalid", "history[0]: item_id and creator_id"),
    (_with(history=[_row(cluster="\udc00")]), "invalid", "history[0]: cluster_id"),
    # integers past a float's range, or past json's 4,300 digits
    (_with(timestamp=10**400), "undecodable", "Overflow"),
    (
        _with(label_weight=None)[:-1] + b', "label_weight": 1' + b"0" * 4400 + b"}",
        "undecodable",
        "4300",
    ),
]


@pytest.mark.parametrize(("value", "reason", "fragment"), BAD)
def test_bad_records_are_skipped_with_a_reason(
    value: bytes | None, reason: str, fragment: str
) -> None:
    result = decode_example(value, max_bytes=10_000, max_history=10)
    assert isinstance(result, Skipped)
    assert result.reason == reason and fragment in result.detail
