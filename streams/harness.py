"""Driving real stream workers from outside: for the integration tests and ``recoil bench``.

Workers run as real ``recoil worker`` subprocesses (a SIGKILL is then a real
crash); records are produced and read with kafka-python, outputs with
``isolation_level="read_committed"`` -- what a downstream consumer sees.
"""

from __future__ import annotations

import itertools
import json
import random
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from recoil.core.events import InteractionEvent
from recoil.core.kafka_settings import KafkaSettings
from recoil.core.processes import Child, ProcessGroup
from streams.config import StreamsConfig
from streams.supervisor import worker_command
from streams.topics import prepare_topics


def worker_argv(settings: KafkaSettings, config: StreamsConfig, *extra: str) -> list[str]:
    """``recoil worker`` arguments that reproduce ``config`` (supervised, as deployed)."""
    return worker_command(settings, config, *extra)


def create_topics(settings: KafkaSettings, config: StreamsConfig) -> None:
    """Create the worker's topics now, before any producer can get one auto-created
    with the broker's default of one partition."""
    prepare_topics(settings, config)


def start_worker(
    group: ProcessGroup, name: str, settings: KafkaSettings, config: StreamsConfig
) -> Child:
    """Start ``recoil worker`` for ``config`` as a child of ``group`` (log: NAME.log)."""
    return group.start(name, worker_argv(settings, config), env=settings.env())


@dataclass(frozen=True)
class Record:
    """One consumed record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


def read_topic(
    settings: KafkaSettings,
    topic: str,
    until: Callable[[list[Record]], bool],
    timeout: float,
    isolation_level: str = "read_committed",
) -> list[Record]:
    """Read ``topic`` from the beginning until ``until(records)`` holds; raise on timeout."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        **settings.kafka_python(),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level=isolation_level,
    )
    records: list[Record] = []
    deadline = time.monotonic() + timeout
    try:
        while not until(records):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"read {len(records)} records from {topic} in {timeout}s; condition unmet"
                )
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(
                    Record(
                        r.topic,
                        r.partition,
                        r.offset,
                        r.key,
                        r.value,
                        tuple((k, bytes(v)) for k, v in (r.headers or ())),
                    )
                    for r in batch
                )
    finally:
        consumer.close()
    return records


def produce(
    settings: KafkaSettings,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes]],
    headers: Iterable[list[tuple[str, bytes | None]] | None] = (),
) -> list[tuple[int, int]]:
    """Produce raw (key, value) records in order, the n-th with the n-th of ``headers``
    (none once those run out); returns each record's (partition, offset)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(
        **settings.kafka_python(), acks="all", enable_idempotence=True, max_request_size=4_000_000
    )
    try:
        futures = [
            producer.send(topic, key=key, value=value, headers=found)
            for (key, value), found in itertools.zip_longest(records, headers)
        ]
        producer.flush()
        return [(m.partition, m.offset) for m in (f.get(timeout=30) for f in futures)]
    finally:
        producer.close()


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Samples of a /metrics page: (name, sorted labels) -> value."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metric(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
           **labels: str) -> float | None:  # fmt: skip
    """One sample's value from :func:`scrape` output (None if absent)."""
    return samples.get((name, tuple(sorted(labels.items()))))


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def wait_until(
    predicate: Callable[[], object],
    timeout: float,
    what: str,
    children: Sequence[Child] = (),
    interval: float = 0.2,
) -> None:
    """Poll ``predicate`` (exceptions count as "not yet"); on timeout raise with child logs."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
            last_error = None
        except Exception as exc:  # not up yet, connection refused, ...
            last_error = exc
        time.sleep(interval)
    logs = "\n".join(f"--- {c.name} ({c.log_file}) ---\n{c.log_tail(60)}" for c in children)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what} ({last_error!r})\n{logs}")


def write_jsonl(path: Path, lines: Iterable[bytes]) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def synthetic_events(
    count: int, users: int, seed: int, duplicates: float = 0.02, late: float = 0.01
) -> list[InteractionEvent]:
    """A deterministic mixed stream: per-user time order, some retries and late events.

    ``duplicates`` of the events are a retry of the user's previous event (same id);
    ``late`` are older than the user's newest event (out of order).
    """
    rng = random.Random(seed)
    clock = {f"user{u:03d}": 1_700_000_000.0 + u for u in range(users)}
    last: dict[str, InteractionEvent] = {}
    events: list[InteractionEvent] = []
    for n in range(count):
        user = rng.choice(sorted(clock))
        roll = rng.random()
        if roll < duplicates and user in last:
            events.append(last[user])
            continue
        if roll < duplicates + late and user in last:
            ts = last[user].timestamp - rng.uniform(1, 100)
        else:
            clock[user] += rng.choice((0.0, 2.0, 30.0, 700.0, 5000.0))
            ts = clock[user]
        event = InteractionEvent(
            event_id=f"{user}-{n:06d}",
            user_id=user,
            item_id=f"item{rng.randrange(300)}",
            creator_id=f"creator{rng.randrange(30)}",
            cluster_id=f"cluster{rng.randrange(8)}" if rng.random() < 0.9 else None,
            timestamp=ts,
            surface=rng.choice(("home", "immersive")),
            dwell_seconds=round(rng.uniform(0, 45), 3),
            item_duration_seconds=rng.choice((0.0, 15.0, 30.0, 60.0)),
            liked=rng.random() < 0.08,
            disliked=rng.random() < 0.03,
            dismissed=rng.random() < 0.01,
        )
        events.append(event)
        if ts >= last.get(user, event).timestamp:
            last[user] = event
    return events


def describe_difference(got: Sequence[bytes], expected: Sequence[bytes]) -> str:
    """A readable account of how two lists of TrainingExample JSON differ."""
    from collections import Counter

    from recoil.core.records import TrainingExample

    def by_id(values: Sequence[bytes]) -> dict[str, list[TrainingExample]]:
        out: dict[str, list[TrainingExample]] = {}
        for v in values:
            x = TrainingExample.from_json(v)
            out.setdefault(x.event_id, []).append(x)
        return out

    g, e = by_id(got), by_id(expected)
    lines = [f"{len(got)} records vs {len(expected)} expected"]
    repeated = sorted(k for k, v in Counter(TrainingExample.from_json(v).event_id
                                            for v in got).items() if v > 1)  # fmt: skip
    lines.append(f"repeated: {repeated[:10]} ({len(repeated)})")
    lines.append(f"missing: {sorted(set(e) - set(g))[:10]} ({len(set(e) - set(g))})")
    lines.append(f"unexpected: {sorted(set(g) - set(e))[:10]} ({len(set(g) - set(e))})")
    differing = sorted(k for k in set(g) & set(e) if g[k][0] != e[k][0])
    lines.append(f"different content: {differing[:10]} ({len(differing)})")
    for k in differing[:3]:
        got_items = [h.item_id for h in g[k][0].history]
        want_items = [h.item_id for h in e[k][0].history]
        lines.append(f"  {k}: history items got {got_items} want {want_items}")
    return "\n".join(lines)
