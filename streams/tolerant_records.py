"""Record batches with a header key that is not UTF-8: read, not raised.

Kafka's protocol says a header key is a UTF-8 string, but the broker does not check, and
clients that take keys as bytes (librdkafka's C API, Go's clients) can write any bytes.
aiokafka's record parser decodes every key strictly, and it decodes every record of a
fetched batch, the ones before the fetch offset included. One such record therefore
raised ``UnicodeDecodeError`` out of every fetch of its partition, before the worker
saw a record: each restart met the same fetch, and the worker stopped for good.

:func:`install` makes aiokafka's fetcher read each fetched record set through
:class:`TolerantRecords`. Every batch is still parsed by aiokafka (in C); a batch whose
parse raises ``UnicodeDecodeError`` is parsed again here from the same bytes, from the
record it failed at, with the key's undecodable bytes replaced by U+FFFD. Its records
then flow like any other: the worker does not read the headers of its input, and the
value decides what becomes of a record.
"""

from __future__ import annotations

import itertools
import logging
import struct
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from aiokafka import codec
from aiokafka.record.util import decode_varint

from recoil.core.log_throttle import worth_logging

log = logging.getLogger(__name__)
_REREADS = itertools.count(1)  # batches read again in this process, for the log

# A record batch (magic v2): base offset (int64), length of the rest (int32), leader
# epoch (int32), magic (int8), CRC (uint32), attributes (int16), last offset delta
# (int32), base and max timestamps (int64), producer id (int64), producer epoch (int16),
# base sequence (int32), record count (int32), then the records, compressed as a whole.
_BATCH = struct.Struct(">qiibIhiqqqhii")
_LENGTH = struct.Struct(">i")
_LOG_OVERHEAD = 12  # the base offset and the length: a batch is LENGTH + 12 bytes
_MAGIC_AT = 16
_CODEC_BITS = 0x07
_LOG_APPEND_TIME_BIT = 0x08
_DECODERS: dict[int, Callable[[bytes], bytes]] = {
    1: codec.gzip_decode,
    2: codec.snappy_decode,
    3: codec.lz4_decode,
    4: codec.zstd_decode,
}


class Record(NamedTuple):
    """A record as aiokafka's fetcher reads one (a v2 record has no checksum of its own)."""

    offset: int
    timestamp: int
    timestamp_type: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    checksum: None = None


def read_batch(raw: bytes) -> Iterator[Record]:
    """The records of one v2 batch (``raw``: the batch's bytes, header included), header
    keys decoded with undecodable bytes replaced. Raises ``ValueError`` on a batch this
    cannot parse."""
    (base_offset, _, _, magic, _, attributes, _, first_ts, max_ts, _, _, _, count) = (
        _BATCH.unpack_from(raw)
    )
    if magic != 2:
        raise ValueError(f"record batch magic {magic}: only v2 batches carry headers")
    payload = raw[_BATCH.size :]
    codec_id = attributes & _CODEC_BITS
    if codec_id:
        if codec_id not in _DECODERS:
            raise ValueError(f"record batch compression {codec_id}: unknown codec")
        payload = _DECODERS[codec_id](payload)
    log_append_time = bool(attributes & _LOG_APPEND_TIME_BIT)
    pos = 0
    for _ in range(count):
        length, pos = decode_varint(payload, pos)
        end = pos + length
        pos += 1  # the record's attributes (int8), unused
        timestamp_delta, pos = decode_varint(payload, pos)
        offset_delta, pos = decode_varint(payload, pos)
        key, pos = _nullable_bytes(payload, pos)
        value, pos = _nullable_bytes(payload, pos)
        header_count, pos = decode_varint(payload, pos)
        headers: list[tuple[str, bytes | None]] = []
        for _ in range(header_count):
            name, pos = _nullable_bytes(payload, pos)
            header_value, pos = _nullable_bytes(payload, pos)
            headers.append(((name or b"").decode("utf-8", "replace"), header_value))
        if pos != end:
            raise ValueError(f"record at offset delta {offset_delta}: {end - pos} bytes left")
        yield Record(
            offset=base_offset + offset_delta,
            timestamp=max_ts if log_append_time else first_ts + timestamp_delta,
            timestamp_type=int(log_append_time),
            key=key,
            value=value,
            headers=headers,
        )


def _nullable_bytes(payload: bytes, pos: int) -> tuple[bytes | None, int]:
    """Kafka's varint-length bytes at ``pos`` (length -1: null), and the position after."""
    size, pos = decode_varint(payload, pos)
    if size < 0:
        return None, pos
    if pos + size > len(payload):
        raise ValueError(f"a field of {size} bytes runs past the record set")
    return bytes(payload[pos : pos + size]), pos + size


class TolerantBatch:
    """One of aiokafka's parsed batches; iterating it falls back to :func:`read_batch`
    when aiokafka's parser meets a header key that is not UTF-8."""

    def __init__(
        self, batch: Any, data: bytes, start: int, end: int, on_reread: Callable[[], None]
    ) -> None:
        self._batch = batch
        self._data = data  # the record set; the batch is data[start:end], sliced if needed
        self._span = (start, end)
        self._on_reread = on_reread

    def __getattr__(self, name: str) -> Any:  # base_offset, is_control_batch, ...
        return getattr(self._batch, name)

    def __next__(self) -> Any:  # aiokafka reads a control batch's marker with next()
        return next(self._batch)

    def __iter__(self) -> Iterator[Any]:
        records = iter(self._batch)
        for taken in itertools.count():
            try:
                record = next(records)
            except StopIteration:
                return
            except UnicodeDecodeError as exc:
                count = next(_REREADS)
                if worth_logging(count):
                    log.warning(
                        "the record batch at offset %d has a header key that is not UTF-8 "
                        "(%s): reading it from its record %d on with the key's bytes "
                        "replaced (%d batches so far)",
                        self._batch.base_offset, exc, taken, count,
                    )  # fmt: skip
                self._on_reread()
                start, end = self._span
                yield from itertools.islice(read_batch(self._data[start:end]), taken, None)
                return
            yield record


class TolerantRecords:
    """aiokafka's ``MemoryRecords`` over one fetched record set, handing out
    :class:`TolerantBatch` es: the same batches, each with its own bytes."""

    def __init__(
        self,
        data: bytes,
        make: Callable[[bytes], Any],
        on_reread: Callable[[], None] = lambda: None,
    ) -> None:
        self._records = make(data)  # aiokafka's own MemoryRecords
        self._data = data
        self._pos = 0
        self._on_reread = on_reread  # called for each batch read again

    def size_in_bytes(self) -> int:
        return int(self._records.size_in_bytes())

    def has_next(self) -> bool:
        return bool(self._records.has_next())

    def next_batch(self) -> Any:
        batch = self._records.next_batch()
        if batch is None:
            return None
        # aiokafka slices batches the same way: LENGTH + 12 bytes, one after another
        (length,) = _LENGTH.unpack_from(self._data, self._pos + 8)
        start, self._pos = self._pos, self._pos + _LOG_OVERHEAD + length
        if self._data[start + _MAGIC_AT] < 2:  # older formats carry no headers
            return batch
        return TolerantBatch(batch, self._data, start, self._pos, self._on_reread)


def install(on_reread: Callable[[], None] = lambda: None) -> None:
    """Make aiokafka's fetcher, in this process, read record sets as
    :class:`TolerantRecords`, calling ``on_reread`` for each batch read again (a second
    call replaces the first's). The fetcher looks ``MemoryRecords`` up by name each time
    it parses a fetch."""
    from aiokafka.consumer import fetcher

    make = getattr(fetcher.MemoryRecords, "aiokafka_records", fetcher.MemoryRecords)

    def tolerant(data: bytes) -> TolerantRecords:
        return TolerantRecords(data, make, on_reread)

    tolerant.aiokafka_records = make  # type: ignore[attr-defined]
    fetcher.MemoryRecords = tolerant
