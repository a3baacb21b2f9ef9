"""The event schema: valid events round-trip, each kind of bad input gets its own reason."""

from __future__ import annotations

import json
from typing import Any

import pytest

from recoil.core.events import (
    INVALID_CODES,
    MAX_EVENT_BYTES,
    InteractionEvent,
    Invalid,
    parse_event,
    validate_event,
)

GOOD: dict[str, Any] = {
    "event_id": "e1",
    "user_id": "u1",
    "item_id": "i1",
    "creator_id": "c1",
    "cluster_id": "k1",
    "timestamp": 1_700_000_000.5,
    "surface": "home",
    "dwell_seconds": 12.5,
    "item_duration_seconds": 30,
    "liked": False,
    "disliked": True,
    "dismissed": False,
    "schema_version": 1,
}


def _with(**changes: Any) -> bytes:
    obj = dict(GOOD)
    for key, value in changes.items():
        if value is _DROP:
            del obj[key]
        else:
            obj[key] = value
    return json.dumps(obj).encode()


_DROP = object()


def test_valid_event_parses_and_round_trips() -> None:
    event = parse_event(json.dumps(GOOD).encode())
    assert isinstance(event, InteractionEvent)
    assert event.item_duration_seconds == 30.0 and isinstance(event.item_duration_seconds, float)
    assert event.dwell_ratio == pytest.approx(12.5 / 30)
    assert parse_event(event.to_json()) == event


def test_cluster_id_is_optional_and_may_be_null() -> None:
    assert isinstance(parse_event(_with(cluster_id=_DROP)), InteractionEvent)
    parsed = parse_event(_with(cluster_id=None))
    assert isinstance(parsed, InteractionEvent) and parsed.cluster_id is None


def test_unknown_duration_has_no_ratio() -> None:
    parsed = parse_event(_with(item_duration_seconds=0))
    assert isinstance(parsed, InteractionEvent) and parsed.dwell_ratio is None


BAD: list[tuple[str, bytes, str, str]] = [
    ("truncated json", json.dumps(GOOD).encode()[:-7], "invalid_json", "not JSON"),
    ("empty payload", b"", "invalid_json", "not JSON"),
    ("invalid utf-8", b'{"event_id": "\xff\xfe"}', "invalid_utf8", "not UTF-8"),
    ("oversized", b"{" + b" " * (MAX_EVENT_BYTES + 1) + b"}", "oversized", "limit"),
    ("array", b"[1, 2]", "not_an_object", "got array"),
    ("string", b'"hello"', "not_an_object", "got string"),
    ("no version", _with(schema_version=_DROP), "missing_field", "'schema_version'"),
    ("future version", _with(schema_version=2), "unknown_schema_version", "2"),
    ("version as string", _with(schema_version="1"), "unknown_schema_version", "'1'"),
    ("missing user", _with(user_id=_DROP), "missing_field", "'user_id'"),
    (
        "two missing",
        _with(user_id=_DROP, item_id=_DROP),
        "missing_field",
        "fields 'item_id', 'user_id'",
    ),
    ("unknown field", _with(rating=5), "unknown_field", "'rating'"),
    ("id as number", _with(item_id=17), "wrong_type", "'item_id' must be a string, got number"),
    ("empty id", _with(user_id=""), "empty_id", "'user_id'"),
    ("huge id", _with(user_id="u" * 300), "wrong_type", "limit"),
    ("cluster as list", _with(cluster_id=["a"]), "wrong_type", "'cluster_id'"),
    ("dwell as string", _with(dwell_seconds="3"), "wrong_type", "'dwell_seconds' must be a number"),
    ("dwell as bool", _with(dwell_seconds=True), "wrong_type", "got boolean"),
    ("liked as int", _with(liked=1), "wrong_type", "'liked' must be true or false"),
    ("negative dwell", _with(dwell_seconds=-1.0), "negative_dwell", "-1.0"),
    ("negative duration", _with(item_duration_seconds=-5), "negative_duration", "-5"),
    ("zero timestamp", _with(timestamp=0), "bad_timestamp", "epoch"),
    (
        "infinite dwell",
        _with(dwell_seconds=_DROP)[:-1] + b', "dwell_seconds": Infinity}',
        "not_finite",
        "'dwell_seconds'",
    ),
    ("partial object", b'{"schema_version": 1, "user_id": "u"}', "missing_field", "'creator_id'"),
    ("nan timestamp", _with(timestamp=float("nan")), "not_finite", "'timestamp'"),
    # integers past a float's range: math.isfinite raised OverflowError on them
    ("400-digit timestamp", _with(timestamp=10**400), "not_finite", "'timestamp'"),
    ("400-digit negative dwell", _with(dwell_seconds=-(10**400)), "not_finite", "bits"),
    # past int()'s 4,300 digits json itself refuses the number (a plain ValueError)
    (
        "4,301-digit duration",
        _with(item_duration_seconds=_DROP)[:-1]
        + b', "item_duration_seconds": 1'
        + b"0" * 4300
        + b"}",
        "invalid_json",
        "4300",
    ),
    # JSON's \ud800 escape decodes to a lone surrogate, which no UTF-8 key can hold
    ("lone surrogate user", _with(user_id="\ud800"), "invalid_utf8", "'user_id'"),
    ("lone surrogate cluster", _with(cluster_id="k\udfff"), "invalid_utf8", "'cluster_id'"),
]


@pytest.mark.parametrize(("case", "raw", "code", "fragment"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_its_reason(case: str, raw: bytes, code: str, fragment: str) -> None:
    result = parse_event(raw)
    assert isinstance(result, Invalid), case
    assert result.code == code
    assert fragment in result.reason
    assert result.code in INVALID_CODES


def test_deeply_nested_json_is_rejected_not_raised() -> None:
    # 4000 levels in 8000 bytes: under the size limit, so only the nesting check can
    # stop it (CPython's decoder raises RecursionError near depth 1000).
    raw = b"[" * 4000 + b"]" * 4000
    assert len(raw) <= MAX_EVENT_BYTES
    result = parse_event(raw)
    assert result == Invalid("invalid_json", "event JSON is nested too deeply")


def test_non_ascii_ids_that_are_utf8_are_valid() -> None:
    result = parse_event(_with(user_id="ü\u4e2d", item_id="\U0001f600"))
    assert isinstance(result, InteractionEvent)
    assert result.user_id.encode() == "ü中".encode()


def test_an_integer_too_long_to_print_is_described_not_printed() -> None:
    result = validate_event({**GOOD, "timestamp": 10**100_000})  # beyond str()'s limit
    assert result == Invalid(
        "not_finite", "'timestamp' must be finite, got an integer of 332193 bits"
    )


def test_validate_event_accepts_decoded_objects() -> None:
    assert isinstance(validate_event(dict(GOOD)), InteractionEvent)
    assert isinstance(validate_event(None), Invalid)
