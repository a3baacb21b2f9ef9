"""Dead letters: headers carry code, reason, source, size and digest; the value is a
byte-identical prefix that keeps every dead letter within the broker's limits."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recoil.core.events import Invalid, parse_event
from streams.dlq import (
    MAX_DEAD_LETTER_BYTES,
    MAX_KEY_BYTES,
    MAX_REASON_CHARS,
    MAX_VALUE_BYTES,
    DeadLetter,
    dead_letter,
    minimal_dead_letter,
)


def size(key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> int:
    return len(key or b"") + len(value) + sum(len(k) + len(v) for k, v in headers)


def test_headers_round_trip_with_the_original_bytes() -> None:
    raw = b'{"event_id": "x", \xff\xfe'
    invalid = parse_event(raw)
    assert isinstance(invalid, Invalid) and invalid.code == "invalid_utf8"
    record = dead_letter(invalid, b"u1", raw, "interactions", 3, 1234)
    assert (record.key, record.value) == (b"u1", raw)
    assert record.headers == [
        ("recoil.dlq.code", b"invalid_utf8"),
        ("recoil.dlq.reason", invalid.reason.encode()),
        ("recoil.dlq.source.topic", b"interactions"),
        ("recoil.dlq.source.partition", b"3"),
        ("recoil.dlq.source.offset", b"1234"),
        ("recoil.dlq.original.size", str(len(raw)).encode()),
        ("recoil.dlq.original.sha256", hashlib.sha256(raw).hexdigest().encode()),
        ("recoil.dlq.truncated", b"false"),
        ("recoil.dlq.original.key_size", b"2"),
    ]
    letter = DeadLetter.from_record(record.key, record.value, record.headers)
    assert letter == DeadLetter(
        b"u1", raw, "invalid_utf8", invalid.reason, "interactions", 3, 1234,
        original_size=len(raw), original_sha256=hashlib.sha256(raw).hexdigest(),
        truncated=False, original_key_size=2,
    )  # fmt: skip
    assert letter.is_original(raw) and not letter.minimal


def test_a_poison_pill_is_cut_to_a_prefix_with_its_size_and_digest() -> None:
    raw = b'{"note": "' + b"x" * 999_990 + b'"}'  # ~1,000,000 bytes
    record = dead_letter(Invalid("oversized", "too big"), b"k" * 5000, raw, "in", 0, 7)
    assert record.value == raw[:MAX_VALUE_BYTES]
    assert record.key == b"k" * MAX_KEY_BYTES
    assert size(record.key, record.value, record.headers) <= MAX_DEAD_LETTER_BYTES
    letter = DeadLetter.from_record(record.key, record.value, record.headers)
    assert letter.truncated and letter.original_size == len(raw) and letter.is_original(raw)
    assert letter.original_key_size == 5000
    assert not letter.is_original(raw[:-1] + b"y")


def test_a_minimal_dead_letter_keeps_no_value() -> None:
    raw = b"x" * 100
    record = minimal_dead_letter(Invalid("crash_loop", "died twice"), None, raw, "in", 1, 2)
    letter = DeadLetter.from_record(record.key, record.value, record.headers)
    assert (letter.key, letter.value, letter.code) == (None, b"", "crash_loop")
    assert letter.minimal and letter.original_size == 100 and letter.is_original(raw)
    assert letter.original_key_size is None


@settings(max_examples=200, deadline=None)
@given(
    key=st.none() | st.binary(max_size=3 * MAX_KEY_BYTES),
    value=st.none() | st.binary(max_size=3 * MAX_VALUE_BYTES),
    reason=st.text(max_size=3 * MAX_REASON_CHARS),
    minimal=st.booleans(),
)
def test_every_dead_letter_fits_and_reads_back(
    key: bytes | None, value: bytes | None, reason: str, minimal: bool
) -> None:
    record = dead_letter(Invalid("x", reason), key, value, "t", 0, 0, minimal=minimal)
    assert size(record.key, record.value, record.headers) <= MAX_DEAD_LETTER_BYTES
    letter = DeadLetter.from_record(record.key, record.value, record.headers)
    assert letter.is_original(value or b"")
    assert (value or b"").startswith(letter.value)


def test_old_dead_letters_without_size_headers_still_read() -> None:
    headers = [("recoil.dlq.code", b"c"), ("recoil.dlq.reason", b"r"),
               ("recoil.dlq.source.topic", b"t"), ("recoil.dlq.source.partition", b"0"),
               ("recoil.dlq.source.offset", b"5")]  # fmt: skip
    letter = DeadLetter.from_record(b"k", b"abc", headers)
    assert (letter.original_size, letter.truncated) == (3, False) and letter.is_original(b"abc")


def test_long_reasons_are_cut() -> None:
    record = dead_letter(Invalid("wrong_type", "x" * 5000), None, b"", "t", 0, 0)
    assert len(dict(record.headers)["recoil.dlq.reason"]) == MAX_REASON_CHARS


def test_a_record_without_the_headers_is_not_a_dead_letter() -> None:
    with pytest.raises(ValueError, match=r"missing header\(s\) recoil\.dlq\.code"):
        DeadLetter.from_record(None, b"{}", [("recoil.dlq.reason", b"r")])
