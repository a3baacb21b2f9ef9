"""SIGKILL a worker mid-stream and restart it: the output equals an uninterrupted run's.

Both runs read the same input at the same time (different app ids and output
topics). Outputs are read with ``read_committed``; equality is on the full list
of records, so a lost example and a repeated one both fail. Exactly-once with
the RocksDB store: the restart also exercises the unclean-shutdown rule (local
table files deleted, the table rebuilt from committed changelog data).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from recoil.broker.embedded import free_port
from recoil.events import InteractionEvent
from recoil.kafka_settings import KafkaSettings
from recoil.labels import LabelConfig
from recoil.processes import ProcessGroup
from recoil.records import TrainingExample
from streams.config import StreamsConfig
from streams.harness import (
    create_topics,
    describe_difference,
    metric,
    produce,
    read_topic,
    scrape,
    start_worker,
    synthetic_events,
    wait_until,
)
from streams.state import replay_in_arrival_order

pytestmark = pytest.mark.integration

LABELS = LabelConfig(history_length=10)


def paced_producer(
    kafka: KafkaSettings, topic: str, events: list[InteractionEvent], chunk: int, pause: float
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


def processed(url: str) -> float:
    samples = scrape(url)
    return sum(
        metric(samples, "recoil_stream_events_total", outcome=o) or 0.0
        for o in ("positive", "dislike", "skip", "none", "invalid", "duplicate", "out_of_order")
    )


def test_sigkill_mid_stream_loses_and_repeats_nothing(
    kafka: KafkaSettings, topic_name: Callable[[str], str], tmp_path: Path
) -> None:
    events = synthetic_events(4000, users=60, seed=11)
    expected_examples, _ = replay_in_arrival_order(events, LABELS, dedupe_window=100)
    expected = sorted(x.to_json() for x in expected_examples)
    killed = StreamsConfig(
        app_id=topic_name("killed"), input_topic=topic_name("in"),
        output_topic=topic_name("out-killed"), dlq_topic=topic_name("dlq-killed"),
        data_dir=tmp_path / "killed", labels=LABELS, partitions=4, web_port=free_port(),
        metrics_port=free_port(), commit_interval=0.5, session_timeout=6.0, batch_size=100,
    )  # fmt: skip
    reference = replace(
        killed, app_id=topic_name("reference"), output_topic=topic_name("out-ref"),
        dlq_topic=topic_name("dlq-ref"), data_dir=tmp_path / "reference",
        web_port=free_port(), metrics_port=free_port(),
    )  # fmt: skip
    url = f"http://127.0.0.1:{killed.metrics_port}/metrics"
    create_topics(kafka, killed)
    with ProcessGroup(tmp_path / "logs") as group:
        victim = start_worker(group, "killed", kafka, killed)
        start_worker(group, "reference", kafka, reference)
        producer = paced_producer(kafka, killed.input_topic, events, chunk=200, pause=0.4)
        wait_until(lambda: processed(url) >= 1200, 120, "1200 events through", [victim])
        group.stop(victim, sig=signal.SIGKILL)
        assert victim.process.returncode == -signal.SIGKILL
        group.children.remove(victim)  # a dead child on purpose: not a failure for check()
        restarted = start_worker(group, "killed", kafka, killed)
        producer.join(timeout=120)
        got_killed = settled_output(kafka, killed.output_topic, len(expected))
        got_reference = settled_output(kafka, reference.output_topic, len(expected))
        group.check()  # the reference worker and the restarted one are still up
        log = restarted.log_file.read_text()

    # The uninterrupted run is the pure rule, exactly; so is the killed-and-restarted one.
    assert got_reference == expected, describe_difference(got_reference, expected)
    assert got_killed == got_reference, describe_difference(got_killed, expected)
    assert len({TrainingExample.from_json(v).event_id for v in got_killed}) == len(expected)
    assert "no clean shutdown recorded" in log  # local RocksDB state was not trusted
