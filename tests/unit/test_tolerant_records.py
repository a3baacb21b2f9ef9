"""Record sets with a header key that is not UTF-8 are read, in every codec
(``streams.tolerant_records``), and batches without one are read by aiokafka as before."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy as BatchBuilder
from aiokafka.record.memory_records import MemoryRecords

from streams.tolerant_records import TolerantRecords, install, read_batch
from tests.support.header_keys import NOT_UTF8, RawHeaderKey

CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
BAD_KEY_BYTES = NOT_UTF8 + b"k"
T0 = 1_700_000_000_000


def batch(base_offset: int, codec: int, bad: set[int], count: int = 5) -> bytes:
    """A v2 batch of ``count`` records; those at the indices in ``bad`` carry a header key
    that is not UTF-8, the others a plain one."""
    builder = BatchBuilder(2, codec, 0, -1, -1, -1, 1 << 20)
    for n in range(count):
        key = RawHeaderKey(BAD_KEY_BYTES) if n in bad else "trace"
        builder.append(n, T0 + n, f"u{n}".encode(), f"value {n}".encode() * 20,
                       [(key, b"h%d" % n), ("none", None)])  # fmt: skip
    raw = bytearray(builder.build())
    raw[0:8] = base_offset.to_bytes(8, "big")  # the broker assigns the base offset
    return bytes(raw)


def fields(record: Any) -> tuple[Any, ...]:
    return (record.offset, record.timestamp, record.timestamp_type, record.key, record.value,
            list(record.headers))  # fmt: skip


def read_all(data: bytes) -> list[tuple[Any, ...]]:
    records = TolerantRecords(data, MemoryRecords)
    out: list[tuple[Any, ...]] = []
    while records.has_next():
        out += [fields(r) for r in records.next_batch()]
    return out


def expected(base_offset: int, bad: set[int], count: int = 5) -> list[tuple[Any, ...]]:
    return [
        (base_offset + n, T0 + n, 0, f"u{n}".encode(), f"value {n}".encode() * 20,
         [("\ufffd\ufffdk" if n in bad else "trace", b"h%d" % n), ("none", None)])
        for n in range(count)
    ]  # fmt: skip


@pytest.mark.parametrize("codec", CODECS)
def test_a_key_that_is_not_utf8_is_read_with_its_bytes_replaced(codec: str) -> None:
    data = batch(100, CODECS[codec], bad={2})
    with pytest.raises(UnicodeDecodeError):  # aiokafka alone: the fetch fails
        list(MemoryRecords(data).next_batch())
    assert read_all(data) == expected(100, {2})


def test_each_batch_of_a_record_set_is_read_from_its_own_bytes() -> None:
    data = batch(0, 0, set()) + batch(5, CODECS["zstd"], {0, 4}) + batch(10, 0, {1})
    assert read_all(data) == expected(0, set()) + expected(5, {0, 4}) + expected(10, {1})


def test_good_batches_are_aiokafka_s_own_records() -> None:
    data = batch(7, CODECS["lz4"], set())
    ours = TolerantRecords(data, MemoryRecords).next_batch()
    theirs = MemoryRecords(data).next_batch()
    records = list(ours)  # a batch is read once
    assert all(type(r).__module__.startswith("aiokafka") for r in records)
    assert [fields(r) for r in records] == [fields(r) for r in theirs] == expected(7, set())
    assert ours.base_offset == 7 and ours.next_offset == 12 and not ours.is_control_batch


def test_the_parser_refuses_what_it_cannot_read() -> None:
    data = bytearray(batch(0, 0, set()))
    with pytest.raises(ValueError, match="magic 1"):
        list(read_batch(bytes(data[:16]) + b"\x01" + bytes(data[17:])))
    data[21:23] = (6).to_bytes(2, "big")  # compression 6: no such codec
    with pytest.raises(ValueError, match="unknown codec"):
        list(read_batch(bytes(data)))


def test_install_makes_the_fetcher_read_tolerantly_and_count() -> None:
    from aiokafka.consumer import fetcher

    before = fetcher.MemoryRecords
    counts: list[str] = []
    try:
        install(lambda: counts.append("first"))
        install(lambda: counts.append("second"))  # replaces the first; wraps aiokafka's once
        records = fetcher.MemoryRecords(batch(3, CODECS["gzip"], {0}) + batch(8, 0, set()))
        assert isinstance(records, TolerantRecords)
        while records.has_next():
            list(records.next_batch())
    finally:
        fetcher.MemoryRecords = before
    assert counts == ["second"]  # the bad batch, once
