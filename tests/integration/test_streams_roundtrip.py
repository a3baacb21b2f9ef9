"""A logged file replayed into Kafka comes out of a real worker as the exact training examples.

This is also the Faust agent round trip: ``recoil replay`` -> ``interactions`` ->
``recoil worker`` (exactly-once, RocksDB table) -> ``training-examples`` read with
``read_committed``; the history view and the metrics agree.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from recoil.broker.embedded import free_port
from recoil.core.events import InteractionEvent
from recoil.core.kafka_settings import KafkaSettings
from recoil.core.labels import LabelConfig
from recoil.core.processes import ProcessGroup
from recoil.core.records import LABEL_HEADER, HistoryItem, TrainingExample
from recoil.core.windows import events_to_examples
from streams.config import StreamsConfig
from streams.harness import get_json, metric, read_topic, scrape, start_worker, wait_until
from streams.harness import write_jsonl as write_lines
from tests.support.streams import worker_topics

pytestmark = pytest.mark.integration

T0 = 1_700_000_000.0


def event(
    eid: str, user: str, item: str, ts: float, dwell: float, duration: float = 30.0,
    *, liked: bool = False, disliked: bool = False, creator: str = "c1",
) -> InteractionEvent:  # fmt: skip
    return InteractionEvent(
        event_id=eid, user_id=user, item_id=item, creator_id=creator, cluster_id="k1",
        timestamp=T0 + ts, surface="home", dwell_seconds=dwell, item_duration_seconds=duration,
        liked=liked, disliked=disliked, dismissed=False,
    )  # fmt: skip


ALICE = [
    event("a1", "alice", "i1", 0, 29.0),  # positive
    event("a2", "alice", "i2", 5, 12.0),  # no label
    event("a3", "alice", "i3", 100, 1.0),  # skip
    event("a4", "alice", "i4", 130, 30.0, disliked=True, creator="c2"),  # dislike
    event("a5", "alice", "i5", 4000, 3.0, liked=True),  # like (beats the skip)
]
BOB = [
    event("b1", "bob", "i1", 10, 25.0),  # positive
    event("b2", "bob", "i7", 20, 2.0),  # skip
    event("b2", "bob", "i7", 20, 2.0),  # a producer retry: duplicate
    event("b3", "bob", "i8", 15, 30.0),  # older than bob's newest item: out of order
    event("b4", "bob", "i9", 700, 29.0),  # positive
]
CAROL = [
    event("c1", "carol", "i3", 50, 25.0, duration=0.0),  # unknown duration: 25 s >= 20 s
    event("c2", "carol", "i4", 60, 1.0, duration=0.0),  # 1 s < 2 s: skip
]
# Interleaved as a real log would be; per-user order is kept.
EVENTS = [ALICE[0], BOB[0], CAROL[0], ALICE[1], BOB[1], BOB[2], CAROL[1], ALICE[2], BOB[3],
          ALICE[3], BOB[4], ALICE[4]]  # fmt: skip
LABELS = LabelConfig(history_length=3)


# Whole fetches (the default) and Faust's own stream (--no-fetch-batches) alike.
@pytest.mark.parametrize("fetch_batches", [True, False], ids=["fetches", "faust-stream"])
def test_replayed_file_yields_exact_training_examples(
    kafka: KafkaSettings, topic_name: Callable[[str], str], tmp_path: Path, fetch_batches: bool
) -> None:
    config = StreamsConfig(
        **worker_topics(topic_name), data_dir=tmp_path / "data", labels=LABELS,
        partitions=3, web_port=free_port(), metrics_port=free_port(), commit_interval=0.3,
        session_timeout=6.0, fetch_batches=fetch_batches,
    )  # fmt: skip
    log = write_lines(tmp_path / "events.jsonl", [e.to_json() for e in EVENTS])
    done = subprocess.run(
        [sys.executable, "-m", "recoil", "replay", str(log), "--topic", config.input_topic,
         "--bootstrap-servers", kafka.bootstrap_servers, "--partitions", "3",
         "--keep-file-order"],  # bob's late event must reach the worker late
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"replayed {len(EVENTS)} events" in done.stdout
    # replay says up front which events the worker will drop as late: bob's b3 only
    said = done.stdout + done.stderr
    assert f"warning: 1 of {len(EVENTS)} events were sent after" in said, said

    # What the shared offline windowing says, given that the stream drops the retry
    # (same event id) and bob's late event (older than his newest history item).
    kept = [e for i, e in enumerate(EVENTS) if i not in (5, 8)]
    expected = sorted(events_to_examples(kept, LABELS), key=lambda x: x.event_id)
    a1 = HistoryItem("i1", "c1", "k1", False, 4, 0, T0)
    a2 = HistoryItem("i2", "c1", "k1", False, 2, 1, T0 + 5)
    a3 = HistoryItem("i3", "c1", "k1", False, 0, 3, T0 + 100)
    a4 = HistoryItem("i4", "c2", "k1", True, 5, 2, T0 + 130)
    alice_expected = [
        TrainingExample("a1", "alice", T0, (), "i1", "c1", "k1", "positive", 1.0),
        TrainingExample("a3", "alice", T0 + 100, (a1, a2), "i3", "c1", "k1", "skip", 0.25),
        TrainingExample("a4", "alice", T0 + 130, (a1, a2, a3), "i4", "c2", "k1", "dislike", 1.0),
        TrainingExample("a5", "alice", T0 + 4000, (a2, a3, a4), "i5", "c1", "k1", "positive", 1.0),
    ]
    assert [x for x in expected if x.user_id == "alice"] == alice_expected

    with ProcessGroup(tmp_path / "logs") as group:
        worker = start_worker(group, "worker", kafka, config)
        records = read_topic(
            kafka, config.output_topic, lambda rs: len(rs) >= len(expected), timeout=120
        )
        metrics_url = f"http://127.0.0.1:{config.metrics_port}/metrics"
        wait_until(
            lambda: sum(
                metric(scrape(metrics_url), "recoil_stream_events_total", outcome=o) or 0
                for o in ("positive", "dislike", "skip", "none", "duplicate", "out_of_order")
            ) == len(EVENTS),
            30, "all events counted", [worker],
        )  # fmt: skip
        wait_until(  # the table-size gauge is refreshed once a second
            lambda: metric(scrape(metrics_url), "recoil_stream_history_users") == 3.0,
            10, "history_users == 3", [worker],
        )  # fmt: skip
        samples = scrape(metrics_url)
        history = get_json(f"http://127.0.0.1:{config.web_port}/history/alice")
        unknown = get_json(f"http://127.0.0.1:{config.web_port}/history/nobody")
        group.check()

    got = sorted((TrainingExample.from_json(r.value) for r in records), key=lambda x: x.event_id)
    assert got == expected
    assert all(r.key == TrainingExample.from_json(r.value).user_id.encode() for r in records)
    # each record carries its label (the example without its history) as a header
    assert all(
        r.headers == ((LABEL_HEADER, TrainingExample.from_json(r.value).label_json()),)
        for r in records
    )
    counts = {
        o: metric(samples, "recoil_stream_events_total", outcome=o)
        for o in ("positive", "dislike", "skip", "none", "invalid", "duplicate", "out_of_order")
    }
    assert counts == {"positive": 5.0, "dislike": 1.0, "skip": 3.0, "none": 1.0, "invalid": 0.0,
                      "duplicate": 1.0, "out_of_order": 1.0}  # fmt: skip
    examples_by_kind = {
        k: metric(samples, "recoil_stream_training_examples_total", kind=k)
        for k in ("positive", "dislike", "skip")
    }
    assert examples_by_kind == {"positive": 5.0, "dislike": 1.0, "skip": 3.0}
    assert metric(samples, "recoil_stream_processing_seconds_count") == len(EVENTS)
    a5 = HistoryItem("i5", "c1", "k1", False, 1, 5, T0 + 4000)
    assert history["history"] == [h.to_row() for h in (a3, a4, a5)]
    assert history["columns"] == ["item_id", "creator_id", "cluster_id", "disliked",
                                  "dwell_bucket", "gap_bucket", "timestamp"]  # fmt: skip
    assert unknown["history"] == []
