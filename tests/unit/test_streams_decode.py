"""The worker's orjson decode gives exactly ``parse_event``'s answer, reasons included."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recoil.core.events import MAX_EVENT_BYTES, parse_event
from streams.processor import decode_event

GOOD: dict[str, Any] = {
    "event_id": "e1", "user_id": "u1", "item_id": "i1", "creator_id": "c1",
    "cluster_id": "k7", "timestamp": 1_700_000_000.5, "surface": "home",
    "dwell_seconds": 12.5, "item_duration_seconds": 30, "liked": False, "disliked": True,
    "dismissed": False, "schema_version": 1,
}  # fmt: skip


def _raw(**changes: Any) -> bytes:
    return json.dumps({**GOOD, **changes}).encode()


EDGES = [
    _raw(),
    _raw(cluster_id=None),
    _raw(user_id="ü\u4e2d"),  # non-ASCII ids
    _raw(timestamp=10**30),  # an integer orjson reads as a float: valid either way
    _raw(schema_version=10**30),  # beyond 64 bits: orjson and json differ; the reason may not
    _raw(dwell_seconds=-(10**30)),
    _raw(dwell_seconds=float("nan")),  # NaN: json reads it, orjson refuses
    _raw(item_id="\ud800"),  # a lone surrogate, escaped
    _raw(user_id="\udfff"),
    _raw(timestamp=10**400),  # beyond a float: orjson reads inf, json an int
    _raw()[:-1] + b', "extra_number": 1' + b"0" * 4300 + b"}",  # past json's 4,300 digits
    _raw(extra=1),
    b'{"a":1,"a":2}',
    b"\xef\xbb\xbf" + _raw(),  # a byte-order mark
    b"\xff" + _raw(),  # not UTF-8
    b"[" * 5000 + b"]" * 5000,  # nested too deeply for both
    b" " + _raw() + b" ",
    b"KILL",
    b"",
    b"x" * (MAX_EVENT_BYTES + 1),
]


@pytest.mark.parametrize("raw", EDGES)
def test_decode_event_answers_like_parse_event(raw: bytes) -> None:
    assert decode_event(raw) == parse_event(raw)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(sorted(GOOD)),
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    )
)
def test_decode_event_answers_like_parse_event_on_changed_events(changes: dict[str, Any]) -> None:
    raw = _raw(**changes)
    assert decode_event(raw) == parse_event(raw)
