"""Recommend-request parsing, pure: every limit at its edge, every rejection's exact
reason and status, and the defaults a body may leave out."""

from __future__ import annotations

import re
from typing import Any

import pytest

from recoil.core.records import HistoryItem
from serving.requests import (
    DEFAULT_K,
    MAX_BATCH,
    MAX_HISTORY,
    MAX_K,
    BadRequestError,
    check_k,
    parse_batch_body,
    parse_history_item,
    parse_json_body,
    parse_k,
    parse_recommend_body,
)

ROW = ["i1", "c1", "k1", 0, 3, 2, 5.0]
ITEM = HistoryItem("i1", "c1", "k1", False, 3, 2, 5.0)


def _refused(call: Any, reason: str, status: int = 400) -> None:
    with pytest.raises(BadRequestError, match=f"^{re.escape(reason)}$") as caught:
        call()
    assert caught.value.reason == reason and caught.value.status == status


def test_limits_are_what_the_api_documents() -> None:
    assert (DEFAULT_K, MAX_K, MAX_HISTORY, MAX_BATCH) == (10, 500, 1000, 1024)


@pytest.mark.parametrize(("raw", "k"), [(None, 10), ("", 10), ("1", 1), ("500", 500)])
def test_parse_k_accepts_its_range_and_defaults(raw: str | None, k: int) -> None:
    assert parse_k(raw) == k


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("abc", "k must be an integer, got 'abc'"),
        ("2.5", "k must be an integer, got '2.5'"),
        ("0", "k must be between 1 and 500, got 0"),
        ("501", "k must be between 1 and 500, got 501"),
        ("-3", "k must be between 1 and 500, got -3"),
    ],
)
def test_parse_k_refusals(raw: str, reason: str) -> None:
    _refused(lambda: parse_k(raw), reason)


@pytest.mark.parametrize(
    ("k", "reason"),
    [(True, "k must be an integer, got True"), (2.0, "k must be an integer, got 2.0"),
     ("3", "k must be an integer, got '3'")],
)  # fmt: skip
def test_check_k_wants_a_real_integer(k: object, reason: str) -> None:
    _refused(lambda: check_k(k), reason)


def test_history_item_from_a_row_and_from_an_object() -> None:
    assert parse_history_item(ROW, 0) == ITEM
    named = {"item_id": "i1", "creator_id": "c1", "cluster_id": "k1", "disliked": False,
             "dwell_bucket": 3, "gap_bucket": 2, "timestamp": 5.0}  # fmt: skip
    assert parse_history_item(named, 0) == ITEM
    # defaults: no cluster, not disliked, a full watch (last dwell bucket), no gap, time 0
    bare = parse_history_item({"item_id": "i", "creator_id": "c"}, 0)
    assert bare == HistoryItem("i", "c", None, False, 5, 0, 0.0)
    assert parse_history_item([*ROW[:3], True, 0, 7, 3], 0) == HistoryItem(
        "i1", "c1", "k1", True, 0, 7, 3
    )
    assert parse_history_item([*ROW[:3], 1, 5, 0, 0], 0).disliked is True


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        (ROW[:6], "history[4] must have 7 columns ('item_id', 'creator_id', 'cluster_id', "
                  "'disliked', 'dwell_bucket', 'gap_bucket', 'timestamp')"),
        ("i1", "history[4] must be an object or a row, got str"),
        ({"creator_id": "c"}, "history[4].item_id must be a non-empty string"),
        ({"item_id": "", "creator_id": "c"}, "history[4].item_id must be a non-empty string"),
        ({"item_id": "i", "creator_id": 7}, "history[4].creator_id must be a non-empty string"),
        ({"item_id": "i", "creator_id": "c", "cluster_id": 3},
         "history[4].cluster_id must be a string or null"),
        ({"item_id": "i", "creator_id": "c", "disliked": 2},
         "history[4].disliked must be true or false"),
        ({"item_id": "i", "creator_id": "c", "disliked": "yes"},
         "history[4].disliked must be true or false"),
        ({"item_id": "i", "creator_id": "c", "dwell_bucket": 6},
         "history[4].dwell_bucket must be an integer in [0, 5]"),
        ({"item_id": "i", "creator_id": "c", "dwell_bucket": -1},
         "history[4].dwell_bucket must be an integer in [0, 5]"),
        ({"item_id": "i", "creator_id": "c", "dwell_bucket": True},
         "history[4].dwell_bucket must be an integer in [0, 5]"),
        ({"item_id": "i", "creator_id": "c", "gap_bucket": 8},
         "history[4].gap_bucket must be an integer in [0, 7]"),
        ({"item_id": "i", "creator_id": "c", "gap_bucket": 1.0},
         "history[4].gap_bucket must be an integer in [0, 7]"),
        ({"item_id": "i", "creator_id": "c", "timestamp": float("nan")},
         "history[4].timestamp must be a finite number"),
        ({"item_id": "i", "creator_id": "c", "timestamp": float("inf")},
         "history[4].timestamp must be a finite number"),
        ({"item_id": "i", "creator_id": "c", "timestamp": True},
         "history[4].timestamp must be a finite number"),
        ({"item_id": "i", "creator_id": "c", "timestamp": "1"},
         "history[4].timestamp must be a finite number"),
    ],
)  # fmt: skip
def test_history_item_refusals_name_the_position_and_field(obj: object, reason: str) -> None:
    _refused(lambda: parse_history_item(obj, 4), reason)


def test_recommend_body_defaults_and_fields() -> None:
    req = parse_recommend_body({"history": [ROW]})
    assert (req.history, req.k, req.exclude_seen, req.unknown_items) == (
        (ITEM,), 10, True, "ignore",
    )  # fmt: skip
    req = parse_recommend_body(
        {"history": [], "k": 3, "exclude_seen": False, "unknown_items": "reject"}
    )
    assert (req.history, req.k, req.exclude_seen, req.unknown_items) == ((), 3, False, "reject")
    assert len(parse_recommend_body({"history": [ROW] * MAX_HISTORY}).history) == MAX_HISTORY


@pytest.mark.parametrize(
    ("body", "reason", "status"),
    [
        ([], "body must be a JSON object with a 'history' list", 400),
        ({"history": [], "user": "u"}, "unknown fields ['user']", 400),
        ({"history": {}}, "'history' must be a list of history items (oldest first)", 400),
        ({}, "'history' must be a list of history items (oldest first)", 400),
        ({"history": [ROW] * (MAX_HISTORY + 1)}, "'history' has 1001 items, the limit is 1000",
         413),
        ({"history": [], "exclude_seen": 1}, "'exclude_seen' must be true or false", 400),
        ({"history": [], "k": 0}, "k must be between 1 and 500, got 0", 400),
        ({"history": [], "unknown_items": "drop"},
         "'unknown_items' must be one of ['ignore', 'reject'], got 'drop'", 400),
        ({"history": [ROW, "x"]}, "history[1] must be an object or a row, got str", 400),
    ],
)  # fmt: skip
def test_recommend_body_refusals(body: Any, reason: str, status: int) -> None:
    _refused(lambda: parse_recommend_body(body), reason, status)


def test_batch_body() -> None:
    req = parse_batch_body({"histories": [[], [ROW]], "k": 2, "unknown_items": "reject"})
    assert (req.histories, req.k, req.exclude_seen, req.unknown_items) == (
        ((), (ITEM,)), 2, True, "reject",
    )  # fmt: skip
    assert parse_batch_body({"histories": [[]] * MAX_BATCH}).k == DEFAULT_K
    assert parse_batch_body({"histories": [[]], "exclude_seen": False}).exclude_seen is False


@pytest.mark.parametrize(
    ("body", "reason", "status"),
    [
        ({"history": []}, "unknown fields ['history']", 400),
        ("x", "body must be a JSON object with a 'histories' list", 400),
        ({"histories": []}, "'histories' must be a non-empty list of histories", 400),
        ({"histories": [[]] * (MAX_BATCH + 1)}, "'histories' has 1025 entries, the limit is 1024",
         413),
        ({"histories": [[], [ROW, 5]]}, "histories[1]: history[1] must be an object or a row, "
                                        "got int", 400),
        ({"histories": [[], [ROW] * (MAX_HISTORY + 1)]},
         "histories[1]: 'history' has 1001 items, the limit is 1000", 413),
        ({"histories": [[]], "exclude_seen": "no"}, "'exclude_seen' must be true or false", 400),
        ({"histories": [[]], "k": 501}, "k must be between 1 and 500, got 501", 400),
    ],
)  # fmt: skip
def test_batch_body_refusals(body: Any, reason: str, status: int) -> None:
    _refused(lambda: parse_batch_body(body), reason, status)


def test_json_body() -> None:
    assert parse_json_body(b'{"history": []}') == {"history": []}
    _refused(lambda: parse_json_body(b'{"a": "\xff"}'), "body is not UTF-8 text")
    _refused(lambda: parse_json_body(b"{nope"),
             "body is not JSON: Expecting property name enclosed in double quotes")  # fmt: skip
    _refused(lambda: parse_json_body(b"[" * 100_000 + b"]" * 100_000),
             "body is JSON nested too deeply")  # fmt: skip
    with pytest.raises(BadRequestError, match=r"^body holds a value JSON decoding refused: "):
        parse_json_body(b"9" * 5000)
