"""Recommend-request parsing, pure: every limit at its edge, every rejection's exact
reason and status, and the defaults a body may leave out."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from recoil.core.records import HistoryItem
from serving.requests import (
    DEFAULT_K,
    LARGE_BODY_BYTES,
    MAX_BATCH,
    MAX_HISTORY,
    MAX_K,
    BadRequestError,
    _decode_in_pieces,
    check_content_type,
    check_k,
    parse_batch_body,
    parse_body,
    parse_history_item,
    parse_json_body,
    parse_k,
    parse_recommend_body,
    query_value,
)

ROW = ["i1", "c1", "k1", 0, 3, 2, 5.0]
ITEM = HistoryItem("i1", "c1", "k1", False, 3, 2, 5.0)


def _refused(call: Any, reason: str, status: int = 400) -> None:
    with pytest.raises(BadRequestError, match=f"^{re.escape(reason)}$") as caught:
        call()
    assert caught.value.reason == reason and caught.value.status == status


def test_limits_are_what_the_api_documents() -> None:
    assert (DEFAULT_K, MAX_K, MAX_HISTORY, MAX_BATCH) == (10, 500, 1000, 1024)


@pytest.mark.parametrize(("raw", "k"), [(None, 10), ("", 10), ("1", 1), ("500", 500), ("007", 7)])
def test_parse_k_accepts_its_range_and_defaults(raw: str | None, k: int) -> None:
    assert parse_k(raw) == k


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("abc", "k must be an integer in ASCII digits, got 'abc'"),
        ("2.5", "k must be an integer in ASCII digits, got '2.5'"),
        ("0", "k must be between 1 and 500, got 0"),
        ("501", "k must be between 1 and 500, got 501"),
        ("-3", "k must be between 1 and 500, got -3"),
        # int() takes all of these; a client never means them as k
        ("5_0", "k must be an integer in ASCII digits, got '5_0'"),
        ("\u0663", "k must be an integer in ASCII digits, got '\u0663'"),  # Arabic-Indic 3
        ("\uff15", "k must be an integer in ASCII digits, got '\uff15'"),  # fullwidth 5
        (" 5", "k must be an integer in ASCII digits, got ' 5'"),
        ("5 ", "k must be an integer in ASCII digits, got '5 '"),
        ("5\n", "k must be an integer in ASCII digits, got '5\\n'"),
        ("+5", "k must be an integer in ASCII digits, got '+5'"),
        ("--5", "k must be an integer in ASCII digits, got '--5'"),
        ("9" * 5000, f"k must be between 1 and 500, got {'9' * 40!r}... (5000 characters)"),
    ],
)
def test_parse_k_refusals(raw: str, reason: str) -> None:
    _refused(lambda: parse_k(raw), reason)


def test_a_query_parameter_given_twice_is_refused_whichever_value_comes_first() -> None:
    assert query_value([], "k") is None
    assert query_value(["3"], "k") == "3"
    reason = "query parameter 'k' is given 2 times; give it once"
    _refused(lambda: query_value(["3", "abc"], "k"), reason)
    _refused(lambda: query_value(["abc", "3"], "k"), reason)
    _refused(lambda: query_value(["3", "3"], "k"), reason)


@pytest.mark.parametrize(
    "header",
    [None, "", "application/json", "application/json; charset=utf-8", "Application/JSON",
     "application/octet-stream", "application/vnd.recoil+json"],
)  # fmt: skip
def test_json_or_no_content_type_is_taken(header: str | None) -> None:
    check_content_type(header)  # does not raise


@pytest.mark.parametrize(
    ("header", "media"),
    [("text/plain", "text/plain"), ("application/x-www-form-urlencoded; charset=utf-8",
      "application/x-www-form-urlencoded"), ("multipart/form-data; boundary=x",
      "multipart/form-data"), ("text/json+xml", "text/json+xml")],
)  # fmt: skip
def test_a_content_type_that_is_not_json_is_a_415(header: str, media: str) -> None:
    reason = f"Content-Type {media!r} is not JSON; send the body as application/json"
    _refused(lambda: check_content_type(header), reason, 415)


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
        # integers past float's range: float() and math.isfinite() overflow on them
        ({"item_id": "i", "creator_id": "c", "timestamp": 10**400},
         "history[4].timestamp must be a finite number"),
        (["i", "c", None, False, 3, 1, -(10**400)], "history[4].timestamp must be a finite number"),
        ({"item_id": "i", "creator_id": "c", "timestamp": None},
         "history[4].timestamp must be a finite number"),
        (["i", "c", None, 10**400, 3, 1, 1], "history[4].disliked must be true or false"),
        (["i", "c", None, 1.0, 3, 1, 1], "history[4].disliked must be true or false"),
        (["i", "c", None, False, 10**400, 1, 1],
         "history[4].dwell_bucket must be an integer in [0, 5]"),
        (["i", "c", None, False, 3.0, 1, 1],
         "history[4].dwell_bucket must be an integer in [0, 5]"),
        (["i", "c", None, False, 3, False, 1],
         "history[4].gap_bucket must be an integer in [0, 7]"),
        (["i", "c", None, False, 3, -(10**400), 1],
         "history[4].gap_bucket must be an integer in [0, 7]"),
    ],
)  # fmt: skip
def test_history_item_refusals_name_the_position_and_field(obj: object, reason: str) -> None:
    _refused(lambda: parse_history_item(obj, 4), reason)


def test_a_timestamp_is_any_finite_json_number_and_comes_back_a_float() -> None:
    for sent in (0, -5, 10**300, 1.5e308, 1700000000.25):
        item = parse_history_item(["i", "c", None, 0, 3, 1, sent], 0)
        assert item.timestamp == float(sent) and type(item.timestamp) is float
    # 10**400 as a body's digits: the decoder takes it, the item check refuses it (a 400)
    body = parse_json_body(b'{"history": [["i", "c", null, false, 3, 1, 1' + b"0" * 400 + b"]]}")
    _refused(lambda: parse_recommend_body(body), "history[0].timestamp must be a finite number")


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
        # a misspelt field would drop the dislike it carries without a word
        ({"history": [{"item_id": "i", "creator_id": "c", "dislike": True}]},
         "history[0] has unknown fields 'dislike'; known: item_id, creator_id, cluster_id, "
         "disliked, dwell_bucket, gap_bucket, timestamp", 400),
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


# Decoded a value at a time past LARGE_BODY_BYTES: the same values as json.loads, and the
# same refusals (each text padded with leading whitespace, which JSON allows, to go there).
SAME_AS_JSON = [
    '{"histories": [[["i1", "c", null, 0, 3, 1, 1.5]], []], "k": 3}',
    ' { "history" : [ { "item_id" : "i" , "creator_id" : "c" } ] , "k" : 2 } \n',
    '{"k": 1, "k": 2, "history": [], "history": [["x"]]}',  # duplicate keys: the last wins
    '{"a\\"b\\u00e9": ["\\ud83d\\ude00", {"x": [1, {"y": []}]}], "e": {}, "f": [[], {}]}',
    '[1, "two", [3, [4, [5]]], {"six": {"seven": [8]}}, null, true, false]',
    '"just a string"',
    "42",
    "-0.5e3",
    "[]",
    "{}",
    "[ ]",
    "{ }",
    '{"n": NaN, "i": [Infinity, -Infinity]}',  # Python's decoder takes them; the checks do not
]
REFUSED_AS_JSON = [
    "", "[", "{", '{"a"}', '{"a" 1}', '{"a": 1,}', "[1,]", "[1 2]", "{1: 2}", '{"a": 1} x',
    "[1] [2]", '{"a": [1, 2}', '{"a": tru}', '["\\x"]', '{"a": "\n"}', "\ufeff[]",
    "[" + "[" * 5000 + "]" * 5000 + "]", '{"k": ' + "9" * 5000 + "}",
]  # fmt: skip


@pytest.mark.parametrize("text", SAME_AS_JSON)
def test_large_bodies_decode_to_what_json_loads_gives(text: str) -> None:
    want = json.dumps(json.loads(text), sort_keys=True)
    assert json.dumps(_decode_in_pieces(text), sort_keys=True) == want  # not by falling back
    padded = (" " * (LARGE_BODY_BYTES + 1) + text).encode()
    assert json.dumps(parse_json_body(padded), sort_keys=True) == want


@pytest.mark.parametrize("text", REFUSED_AS_JSON)
def test_large_bodies_are_refused_as_small_ones_are(text: str) -> None:
    with pytest.raises((ValueError, RecursionError)):
        _decode_in_pieces(text)
    padded = " " * (LARGE_BODY_BYTES + 1) + text
    with pytest.raises((ValueError, RecursionError)) as whole:
        json.loads(padded)
    with pytest.raises(BadRequestError) as large:
        parse_json_body(padded.encode())
    assert large.value.status == 400
    if isinstance(whole.value, json.JSONDecodeError):  # the message json.loads gives, exactly
        assert large.value.reason == f"body is not JSON: {whole.value.msg}"
    else:
        assert large.value.reason.startswith(("body is JSON nested", "body holds a value"))


def test_a_large_batch_parses_as_json_loads_and_the_checks_would() -> None:
    row = ["i1", "c", None, 0, 1, 0, 1]
    raw = json.dumps({"histories": [[row] * 300] * 32, "k": 3}).encode()
    assert len(raw) > LARGE_BODY_BYTES  # decoded in pieces
    req = parse_body(raw, parse_batch_body)
    assert req == parse_batch_body(json.loads(raw))
    assert len(req.histories) == 32 and req.histories[-1][-1] == HistoryItem(
        "i1", "c", None, False, 1, 0, 1.0
    )
