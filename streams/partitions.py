"""The partition of a keyed record: Kafka's default rule (murmur2 of the key), cached per key.

aiokafka computes murmur2 in pure Python and builds two partition lists for
every record it partitions itself; the worker sends one example per event,
keyed by user, for a bounded set of active users. The rule is the producer's
own (:class:`aiokafka.partitioner.DefaultPartitioner` over the sorted
partition ids), so a user's examples land where aiokafka would put them.
"""

from __future__ import annotations

from collections.abc import Collection

from aiokafka.partitioner import DefaultPartitioner


class KeyPartitions:
    """Remembers each key's partition for the topic's current partition count."""

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit  # keys kept; then the cache starts over
        self._cache: dict[bytes, tuple[int, int]] = {}  # key -> (partition count, partition)

    def __len__(self) -> int:
        return len(self._cache)

    def partition(self, key: bytes, partitions: Collection[int]) -> int:
        count = len(partitions)
        found = self._cache.get(key)
        if found is not None and found[0] == count:
            return found[1]
        chosen: int = DefaultPartitioner()(key, sorted(partitions), [])
        if len(self._cache) >= self.limit:
            self._cache.clear()
        self._cache[key] = (count, chosen)
        return chosen
