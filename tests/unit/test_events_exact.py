"""Event validation at its exact edges and with its exact reasons.

Written against the mutants mutation testing found alive (docs/testing.md): limits
that are inclusive, zero values that are valid, singular/plural reasons, and the
fields a parsed event must carry over.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from recoil.core.events import (
    MAX_EVENT_BYTES,
    MAX_ID_CHARS,
    InteractionEvent,
    Invalid,
    parse_event,
)

GOOD: dict[str, Any] = {
    "event_id": "e1", "user_id": "u1", "item_id": "i1", "creator_id": "c1",
    "cluster_id": "k7", "timestamp": 1_700_000_000.5, "surface": "home",
    "dwell_seconds": 12.5, "item_duration_seconds": 30, "liked": False, "disliked": True,
    "dismissed": False, "schema_version": 1,
}  # fmt: skip


def _raw(**changes: Any) -> bytes:
    obj = {**GOOD, **changes}
    return json.dumps({k: v for k, v in obj.items() if v is not _DROP}).encode()


_DROP = object()


def _parsed(raw: bytes) -> InteractionEvent:
    event = parse_event(raw)
    assert isinstance(event, InteractionEvent), event
    return event


def test_parsed_event_keeps_every_field() -> None:
    event = _parsed(_raw())
    assert event == InteractionEvent(
        event_id="e1", user_id="u1", item_id="i1", creator_id="c1", timestamp=1_700_000_000.5,
        surface="home", dwell_seconds=12.5, item_duration_seconds=30.0, liked=False,
        disliked=True, dismissed=False, cluster_id="k7", schema_version=1,
    )  # fmt: skip


def test_wire_form_is_compact_json() -> None:
    wire = _parsed(_raw()).to_json()
    assert b" " not in wire  # separators (",", ":"): ~15% fewer bytes per event
    assert json.loads(wire) == {**GOOD, "item_duration_seconds": 30.0}


def test_an_event_of_exactly_the_size_limit_is_accepted() -> None:
    compact = json.dumps(GOOD, separators=(",", ":"))
    padded = (compact[:-1] + " " * (MAX_EVENT_BYTES - len(compact)) + "}").encode()
    assert len(padded) == MAX_EVENT_BYTES
    assert _parsed(padded).event_id == "e1"
    assert parse_event(padded[:-1] + b" }") == Invalid(
        "oversized", f"event is {MAX_EVENT_BYTES + 1} bytes, the limit is {MAX_EVENT_BYTES}"
    )


def test_ids_of_exactly_the_length_limit_are_accepted() -> None:
    assert _parsed(_raw(item_id="x" * MAX_ID_CHARS)).item_id == "x" * MAX_ID_CHARS
    assert parse_event(_raw(item_id="x" * (MAX_ID_CHARS + 1))) == Invalid(
        "wrong_type", f"'item_id' is {MAX_ID_CHARS + 1} chars, the limit is {MAX_ID_CHARS}"
    )


@pytest.mark.parametrize(
    "changes",
    [{"dwell_seconds": 0}, {"dwell_seconds": 0.5}, {"item_duration_seconds": 0},
     {"timestamp": 0.5}, {"cluster_id": _DROP}],
)  # fmt: skip
def test_zero_and_small_values_are_valid(changes: dict[str, Any]) -> None:
    _parsed(_raw(**changes))


@pytest.mark.parametrize(
    ("changes", "code", "reason"),
    [
        ({"schema_version": _DROP}, "missing_field", "missing field 'schema_version'"),
        ({"schema_version": 2}, "unknown_schema_version", "schema_version 2 is not one of: 1"),
        ({"item_id": _DROP}, "missing_field", "missing field 'item_id'"),
        ({"item_id": _DROP, "liked": _DROP}, "missing_field", "missing fields 'item_id', 'liked'"),
        ({"note": 1}, "unknown_field", "unknown field 'note'"),
        ({"note": 1, "extra": 2}, "unknown_field", "unknown fields 'extra', 'note'"),
        ({"a": 1, "b": 2, "c": 3}, "unknown_field", "unknown fields 'a', 'b', 'c'"),
        ({"liked": 1}, "wrong_type", "'liked' must be true or false, got number"),
        ({"liked": None}, "wrong_type", "'liked' must be true or false, got null"),
        ({"liked": {}}, "wrong_type", "'liked' must be true or false, got object"),
        ({"item_id": None}, "wrong_type", "'item_id' must be a string, got null"),
        ({"item_id": []}, "wrong_type", "'item_id' must be a string, got array"),
        ({"item_id": ""}, "empty_id", "'item_id' must not be empty"),
        ({"timestamp": "1"}, "wrong_type", "'timestamp' must be a number, got string"),
        ({"timestamp": True}, "wrong_type", "'timestamp' must be a number, got boolean"),
        ({"dwell_seconds": -0.5}, "negative_dwell", "'dwell_seconds' is -0.5, must be >= 0"),
        ({"item_duration_seconds": -1}, "negative_duration",
         "'item_duration_seconds' is -1, must be >= 0 (0 = unknown)"),
        ({"timestamp": 0}, "bad_timestamp", "'timestamp' is 0, must be seconds since the epoch"),
    ],
)  # fmt: skip
def test_exact_reasons(changes: dict[str, Any], code: str, reason: str) -> None:
    assert parse_event(_raw(**changes)) == Invalid(code, reason)
