"""Dead letters: how an invalid event is written to ``interactions.dlq``.

A dead letter keeps the record exactly as it arrived, so nothing is lost and a
fixed event can be replayed from it:

    key      the original key bytes (None if the record had none)
    value    the ORIGINAL value bytes, untouched (even when not UTF-8)
    headers  recoil.dlq.code              Invalid.code, e.g. b"invalid_json" (a metric label)
             recoil.dlq.reason            Invalid.reason, UTF-8, for people
             recoil.dlq.source.topic      topic the record was read from
             recoil.dlq.source.partition  its partition, decimal ASCII
             recoil.dlq.source.offset     its offset, decimal ASCII

Headers rather than a JSON envelope keep the value byte-identical to the
input (an envelope would have to escape invalid UTF-8) and follow the
convention of Kafka Connect's ``errors.deadletterqueue.context.headers``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from recoil.events import Invalid

HEADER_PREFIX = "recoil.dlq."
CODE = HEADER_PREFIX + "code"
REASON = HEADER_PREFIX + "reason"
SOURCE_TOPIC = HEADER_PREFIX + "source.topic"
SOURCE_PARTITION = HEADER_PREFIX + "source.partition"
SOURCE_OFFSET = HEADER_PREFIX + "source.offset"
MAX_REASON_CHARS = 1000  # reasons are one line; keep a hostile input from bloating headers


def dlq_headers(
    invalid: Invalid, topic: str, partition: int, offset: int
) -> list[tuple[str, bytes]]:
    """The headers of a dead letter for a record read at ``topic/partition@offset``."""
    return [
        (CODE, invalid.code.encode()),
        (REASON, invalid.reason[:MAX_REASON_CHARS].encode("utf-8", "replace")),
        (SOURCE_TOPIC, topic.encode()),
        (SOURCE_PARTITION, str(partition).encode()),
        (SOURCE_OFFSET, str(offset).encode()),
    ]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead letter as a consumer of the DLQ sees it."""

    key: bytes | None
    value: bytes
    code: str
    reason: str
    source_topic: str
    source_partition: int
    source_offset: int

    @classmethod
    def from_record(
        cls, key: bytes | None, value: bytes, headers: Iterable[tuple[str, bytes]]
    ) -> DeadLetter:
        """Read a DLQ record; raises ValueError naming a missing header."""
        found = dict(headers)
        missing = [h for h in (CODE, REASON, SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET)
                   if h not in found]  # fmt: skip
        if missing:
            raise ValueError(f"not a recoil dead letter: missing header(s) {', '.join(missing)}")
        return cls(
            key=key,
            value=value,
            code=found[CODE].decode(),
            reason=found[REASON].decode("utf-8", "replace"),
            source_topic=found[SOURCE_TOPIC].decode(),
            source_partition=int(found[SOURCE_PARTITION]),
            source_offset=int(found[SOURCE_OFFSET]),
        )
