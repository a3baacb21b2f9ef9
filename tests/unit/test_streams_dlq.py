"""Dead letters: headers carry code, reason and source; the value stays byte-identical."""

from __future__ import annotations

import pytest

from recoil.events import Invalid, parse_event
from streams.dlq import MAX_REASON_CHARS, DeadLetter, dlq_headers


def test_headers_round_trip_with_the_original_bytes() -> None:
    raw = b'{"event_id": "x", \xff\xfe'
    invalid = parse_event(raw)
    assert isinstance(invalid, Invalid) and invalid.code == "invalid_utf8"
    headers = dlq_headers(invalid, "interactions", 3, 1234)
    assert headers == [
        ("recoil.dlq.code", b"invalid_utf8"),
        ("recoil.dlq.reason", invalid.reason.encode()),
        ("recoil.dlq.source.topic", b"interactions"),
        ("recoil.dlq.source.partition", b"3"),
        ("recoil.dlq.source.offset", b"1234"),
    ]
    letter = DeadLetter.from_record(b"u1", raw, headers)
    assert letter == DeadLetter(b"u1", raw, "invalid_utf8", invalid.reason, "interactions", 3, 1234)


def test_long_reasons_are_cut() -> None:
    headers = dict(dlq_headers(Invalid("wrong_type", "x" * 5000), "t", 0, 0))
    assert len(headers["recoil.dlq.reason"]) == MAX_REASON_CHARS


def test_a_record_without_the_headers_is_not_a_dead_letter() -> None:
    with pytest.raises(ValueError, match=r"missing header\(s\) recoil\.dlq\.code"):
        DeadLetter.from_record(None, b"{}", [("recoil.dlq.reason", b"r")])
