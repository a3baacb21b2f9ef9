"""Header keys written as any bytes, UTF-8 or not.

Kafka's protocol says a header key is UTF-8; the broker stores what it gets, and clients
that take keys as bytes (librdkafka's C API, Go's clients) can write any. Python's
clients encode ``str`` keys with ``key.encode("utf-8")`` (kafka-python's producer,
aiokafka's pure-Python batch builder), so a ``str`` whose ``encode`` returns other bytes
writes them as they are.
"""

from __future__ import annotations


class RawHeaderKey(str):
    """A header key written as ``raw``; as a string it reads as ``raw`` decoded with
    undecodable bytes replaced, which is how recoil's readers see it."""

    raw: bytes

    def __new__(cls, raw: bytes) -> RawHeaderKey:
        key = super().__new__(cls, raw.decode("utf-8", "replace"))
        key.raw = raw
        return key

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return self.raw


NOT_UTF8 = b"\xff\xfe"  # two bytes no UTF-8 text starts with
