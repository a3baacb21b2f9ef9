"""streams.partitions: a keyed record goes where aiokafka's own partitioner puts it."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner

from streams.partitions import KeyPartitions


def test_each_key_gets_the_default_partitioners_choice_for_the_current_count() -> None:
    keys = [f"user-{n}".encode() for n in range(500)]
    cache = KeyPartitions()
    for count in (4, 4, 7):  # a second pass hits the cache; 7 partitions: asked anew
        ids = list(range(count))
        got = [cache.partition(key, set(ids)) for key in keys]
        assert got == [DefaultPartitioner()(key, ids, ids) for key in keys]
    assert len(set(got)) == 7  # the keys really spread


def test_the_cache_starts_over_at_its_limit() -> None:
    cache = KeyPartitions(limit=3)
    for n in range(10):
        cache.partition(f"k{n}".encode(), {0, 1})
        assert len(cache) <= 3
