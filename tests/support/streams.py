"""What the stream-worker kill and rebalance tests share: a worker config that reacts
fast, the pure rule's expected output, paced input and the settled output."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from recoil.broker.embedded import free_port
from recoil.events import InteractionEvent
from recoil.kafka_settings import KafkaSettings
from recoil.labels import LabelConfig
from streams.config import StreamsConfig
from streams.harness import metric, produce, read_topic, scrape
from streams.state import UserState, replay_in_arrival_order

LABELS = LabelConfig(history_length=10)


def fast_worker_config(**fields: Any) -> StreamsConfig:
    """A worker of 4 partitions on free ports that commits, rebalances and batches quickly;
    ``fields`` name its app, topics and data directory."""
    return StreamsConfig(
        labels=LABELS, partitions=4, web_port=free_port(), metrics_port=free_port(),
        commit_interval=0.5, session_timeout=6.0, batch_size=100, **fields,
    )  # fmt: skip


def metrics_url(config: StreamsConfig) -> str:
    return f"http://127.0.0.1:{config.metrics_port}/metrics"


def expected_output(
    events: Sequence[InteractionEvent],
) -> tuple[list[bytes], dict[str, UserState]]:
    """The pure rule's examples for ``events`` (sorted JSON) and its final user states."""
    examples, states = replay_in_arrival_order(events, LABELS, dedupe_window=100)
    return sorted(x.to_json() for x in examples), states


def paced_producer(
    kafka: KafkaSettings, topic: str, events: Sequence[InteractionEvent], chunk: int, pause: float
) -> threading.Thread:
    """Produce ``events`` in order, ``chunk`` at a time, in a background thread."""

    def run() -> None:
        for start in range(0, len(events), chunk):
            produce(kafka, topic, [(e.user_id.encode(), e.to_json())
                                   for e in events[start : start + chunk]])  # fmt: skip
            time.sleep(pause)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def settled_output(kafka: KafkaSettings, topic: str, expected: int) -> list[bytes]:
    """The topic's committed values once ``expected`` are visible and a few commits passed."""
    read_topic(kafka, topic, lambda rs: len(rs) >= expected, timeout=180)
    time.sleep(3.0)  # several commit intervals: anything still to come would be visible
    return sorted(r.value for r in read_topic(kafka, topic, lambda rs: len(rs) >= expected, 30))


def scrape_outcomes(url: str) -> dict[str, float]:
    """Events the worker scraped at ``url`` has finished, by outcome (``streams.state``)."""
    samples = scrape(url)
    return {
        o: metric(samples, "recoil_stream_events_total", outcome=o) or 0.0
        for o in ("positive", "dislike", "skip", "none", "invalid", "duplicate", "out_of_order")
    }


def processed(url: str) -> float:
    """Events the worker scraped at ``url`` has finished, whatever their outcome."""
    return sum(scrape_outcomes(url).values())
