"""Dead letters: how an invalid event is written to ``interactions.dlq``.

A dead letter must always be writable, whatever arrived: a record of nearly
the broker's limit, copied whole and given headers, would be refused, and a
worker that cannot write a dead letter cannot move past the record. So a dead
letter keeps a bounded *prefix* of the original value and says what it cut:

    key      the original key bytes, at most MAX_KEY_BYTES (None if it had none)
    value    the first MAX_VALUE_BYTES of the ORIGINAL value bytes, untouched
             (even when not UTF-8); empty in a minimal dead letter
    headers  recoil.dlq.code               Invalid.code, e.g. b"invalid_json" (a metric label)
             recoil.dlq.reason             Invalid.reason, UTF-8, for people
             recoil.dlq.source.topic       topic the record was read from
             recoil.dlq.source.partition   its partition, decimal ASCII
             recoil.dlq.source.offset      its offset, decimal ASCII
             recoil.dlq.original.size      length of the full original value, decimal ASCII
             recoil.dlq.original.sha256    SHA-256 of the full original value, hex
             recoil.dlq.original.key_size  length of the full original key (absent: no key)
             recoil.dlq.truncated          b"true" when value or key is a prefix, else b"false"

The size and digest identify the original, which stays in the source topic at
the source offset until retention removes it; a replay tool reads it from
there when the prefix is not enough. A *minimal* dead letter
(:func:`minimal_dead_letter`) has an empty value: the worker writes it for a
record at which it died (streams.crashloop), where even the bounded copy is
suspect.

Headers rather than a JSON envelope keep the value byte-identical to the
input (an envelope would have to escape invalid UTF-8) and follow the
convention of Kafka Connect's ``errors.deadletterqueue.context.headers``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from recoil.core.events import Invalid

HEADER_PREFIX = "recoil.dlq."
CODE = HEADER_PREFIX + "code"
REASON = HEADER_PREFIX + "reason"
SOURCE_TOPIC = HEADER_PREFIX + "source.topic"
SOURCE_PARTITION = HEADER_PREFIX + "source.partition"
SOURCE_OFFSET = HEADER_PREFIX + "source.offset"
ORIGINAL_SIZE = HEADER_PREFIX + "original.size"
ORIGINAL_SHA256 = HEADER_PREFIX + "original.sha256"
ORIGINAL_KEY_SIZE = HEADER_PREFIX + "original.key_size"
TRUNCATED = HEADER_PREFIX + "truncated"
REQUIRED = (CODE, REASON, SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET)

MAX_REASON_CHARS = 1000  # reasons are one line; keep a hostile input from bloating headers
# Prefix of the value a dead letter keeps: 160x a real event (~400 bytes), and far
# under any producer's or broker's record limit (1 MiB by default), with the headers.
MAX_VALUE_BYTES = 64 * 1024
MAX_KEY_BYTES = 1024  # user ids are at most 256 characters (recoil.core.events.MAX_ID_CHARS)
# The largest dead letter: value, key, reason (<= 3 bytes per char), and the rest.
MAX_DEAD_LETTER_BYTES = MAX_VALUE_BYTES + MAX_KEY_BYTES + 3 * MAX_REASON_CHARS + 1024


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """What the worker sends to the DLQ for one input record."""

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


def dead_letter(
    invalid: Invalid,
    key: bytes | None,
    value: bytes | None,
    topic: str,
    partition: int,
    offset: int,
    *,
    minimal: bool = False,
) -> DeadLetterRecord:
    """The dead letter of the record read at ``topic/partition@offset``.

    Never larger than :data:`MAX_DEAD_LETTER_BYTES`, whatever the input;
    ``minimal`` keeps no value at all (size and digest still describe it).
    """
    original = value if value is not None else b""
    kept = b"" if minimal else original[:MAX_VALUE_BYTES]
    kept_key = None if key is None else key[:MAX_KEY_BYTES]
    truncated = len(kept) < len(original) or (key is not None and len(key) > MAX_KEY_BYTES)
    headers = [
        (CODE, invalid.code.encode()),
        (REASON, invalid.reason[:MAX_REASON_CHARS].encode("utf-8", "replace")),
        (SOURCE_TOPIC, topic.encode()),
        (SOURCE_PARTITION, str(partition).encode()),
        (SOURCE_OFFSET, str(offset).encode()),
        (ORIGINAL_SIZE, str(len(original)).encode()),
        (ORIGINAL_SHA256, hashlib.sha256(original).hexdigest().encode()),
        (TRUNCATED, b"true" if truncated else b"false"),
    ]
    if key is not None:
        headers.append((ORIGINAL_KEY_SIZE, str(len(key)).encode()))
    return DeadLetterRecord(kept_key, kept, headers)


def minimal_dead_letter(
    invalid: Invalid, key: bytes | None, value: bytes | None, topic: str, partition: int,
    offset: int,
) -> DeadLetterRecord:  # fmt: skip
    """A dead letter without the value: key prefix, source, size, digest and reason."""
    return dead_letter(invalid, key, value, topic, partition, offset, minimal=True)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead letter as a consumer of the DLQ sees it.

    ``value`` is the kept prefix of the original (all of it unless
    ``truncated``); ``original_size`` and ``original_sha256`` describe the full
    original value, which is still at ``source_offset`` of ``source_topic``.
    """

    key: bytes | None
    value: bytes
    code: str
    reason: str
    source_topic: str
    source_partition: int
    source_offset: int
    original_size: int
    original_sha256: str
    truncated: bool
    original_key_size: int | None = None

    @property
    def minimal(self) -> bool:
        """Written without any of the value, after the worker died at this record."""
        return self.truncated and not self.value and self.original_size > 0

    def is_original(self, value: bytes) -> bool:
        """Whether ``value`` (e.g. re-read from the source offset) is the dead-lettered one."""
        return (
            len(value) == self.original_size
            and hashlib.sha256(value).hexdigest() == self.original_sha256
        )

    @classmethod
    def from_record(
        cls, key: bytes | None, value: bytes | None, headers: Iterable[tuple[str, bytes]]
    ) -> DeadLetter:
        """Read a DLQ record; raises ValueError naming a missing header.

        Dead letters written before values were cut (no ``original.*`` headers)
        hold the whole value: size and digest are computed from it.
        """
        found = dict(headers)
        missing = [h for h in REQUIRED if h not in found]
        if missing:
            raise ValueError(f"not a recoil dead letter: missing header(s) {', '.join(missing)}")
        kept = value if value is not None else b""
        key_size = found.get(ORIGINAL_KEY_SIZE)
        return cls(
            key=key,
            value=kept,
            code=found[CODE].decode(),
            reason=found[REASON].decode("utf-8", "replace"),
            source_topic=found[SOURCE_TOPIC].decode(),
            source_partition=int(found[SOURCE_PARTITION]),
            source_offset=int(found[SOURCE_OFFSET]),
            original_size=int(found.get(ORIGINAL_SIZE, str(len(kept)).encode())),
            original_sha256=found.get(
                ORIGINAL_SHA256, hashlib.sha256(kept).hexdigest().encode()
            ).decode(),
            truncated=found.get(TRUNCATED, b"false") == b"true",
            original_key_size=None if key_size is None else int(key_size),
        )
