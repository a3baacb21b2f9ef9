"""``recoil broker --data-dir``: stopped and started again on its data while a worker runs.

The broker is the real command, twice on the same data directory and port; the
second start must reuse the stored cluster id (formatting again would give a new
one, which Kafka refuses). A stream worker keeps running across the outage and
must recover by itself. Every event the broker acknowledged must yield exactly
one example (read with ``read_committed``); an event whose send failed during
the outage may yield one or none, never two.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from recoil.broker.embedded import free_port, stored_cluster_id
from recoil.core.events import InteractionEvent
from recoil.core.kafka_settings import KafkaSettings
from recoil.core.processes import Child, ProcessGroup, recoil_command
from recoil.core.records import TrainingExample
from streams.harness import create_topics, read_topic, start_worker, wait_until
from tests.support.streams import fast_worker_config, worker_topics

pytestmark = pytest.mark.integration


def liked_events(count: int, users: int) -> list[InteractionEvent]:
    """Events in time order per user, each a like: every one yields one example."""
    return [
        InteractionEvent(
            event_id=f"ev{n:05d}", user_id=f"user{n % users:02d}", item_id=f"item{n % 97}",
            creator_id=f"creator{n % 13}", cluster_id=None, timestamp=1_700_000_000.0 + n,
            surface="home", dwell_seconds=5.0, item_duration_seconds=10.0,
            liked=True, disliked=False, dismissed=False,
        )
        for n in range(count)
    ]  # fmt: skip


def start_broker(group: ProcessGroup, data_dir: Path, port: int, starts: int) -> Child:
    """``recoil broker --data-dir DATA_DIR --port PORT``; returns once it has announced
    itself for the ``starts``-th time in its (appended) log."""
    child = group.start(
        "broker", recoil_command("broker", "--data-dir", str(data_dir), "--port", str(port))
    )
    wait_until(
        lambda: child.log_file.read_text().count("bootstrap servers:") >= starts,
        120, f"broker start {starts}", [child],
    )  # fmt: skip
    return child


class AckedProducer:
    """Produces events in small chunks from a thread; remembers which the broker acknowledged."""

    def __init__(self, kafka: KafkaSettings, topic: str, events: list[InteractionEvent]) -> None:
        self.kafka, self.topic, self.events = kafka, topic, events
        self.acked: set[str] = set()
        self.failed: set[str] = set()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from kafka import KafkaProducer

        producer = KafkaProducer(
            **self.kafka.kafka_python(), acks="all", enable_idempotence=True,
            request_timeout_ms=5000, max_block_ms=5000, retry_backoff_ms=200,
            reconnect_backoff_max_ms=1000,
        )  # fmt: skip
        try:
            for start in range(0, len(self.events), 40):
                chunk = self.events[start : start + 40]
                sent = []
                for event in chunk:
                    try:
                        key = event.user_id.encode()
                        sent.append((event, producer.send(self.topic, event.to_json(), key=key)))
                    except Exception:  # metadata unavailable while the broker is down
                        self.failed.add(event.event_id)
                for event, future in sent:
                    try:
                        future.get(timeout=30)
                        self.acked.add(event.event_id)
                    except Exception:  # not acknowledged: may or may not be in the log
                        self.failed.add(event.event_id)
                time.sleep(0.1)
        finally:
            producer.close(timeout=10)


def test_broker_restarts_on_its_data_and_the_worker_recovers(
    topic_name: Callable[[str], str], tmp_path: Path
) -> None:
    data_dir, port = tmp_path / "broker", free_port()
    kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}")
    events = liked_events(3000, users=40)
    config = fast_worker_config(**worker_topics(topic_name), data_dir=tmp_path / "worker")
    with ProcessGroup(tmp_path / "logs") as group:
        broker = start_broker(group, data_dir, port, starts=1)
        cluster_id = stored_cluster_id(data_dir / "data")
        create_topics(kafka, config)
        worker = start_worker(group, "worker", kafka, config)
        producer = AckedProducer(kafka, config.input_topic, events)
        producer.thread.start()
        wait_until(lambda: len(producer.acked) >= 800, 120, "800 events acknowledged",
                   [broker, worker])  # fmt: skip
        assert group.stop(broker, sig=signal.SIGINT) == 0  # the command's clean stop
        group.children.remove(broker)
        time.sleep(3.0)  # an outage the worker and the producer both see
        broker = start_broker(group, data_dir, port, starts=2)
        assert stored_cluster_id(data_dir / "data") == cluster_id
        producer.thread.join(timeout=240)
        assert not producer.thread.is_alive()
        acked = producer.acked
        records = read_topic(
            kafka, config.output_topic,
            lambda rs: acked <= {TrainingExample.from_json(r.value).event_id for r in rs},
            timeout=240,
        )  # fmt: skip
        time.sleep(3.0)  # several commit intervals: a late duplicate would show now
        records = read_topic(kafka, config.output_topic, lambda rs: len(rs) >= len(records), 30)
        group.check()  # the worker recovered by itself: it is still the first process
        log = broker.log_file.read_text()

    counts = Counter(TrainingExample.from_json(r.value).event_id for r in records)
    assert log.count("bootstrap servers:") == 2
    assert "Invalid cluster.id" not in log
    assert len(acked) + len(producer.failed) == len(events)
    assert len(acked) >= 2000, f"only {len(acked)} acknowledged"
    missing = sorted(acked - set(counts))
    assert not missing, f"{len(missing)} acknowledged events yielded no example: {missing[:5]}"
    repeated = sorted(i for i, n in counts.items() if n > 1)
    assert not repeated, f"{len(repeated)} events yielded two examples: {repeated[:5]}"
    assert set(counts) <= {e.event_id for e in events}
