"""``recoil replay`` on the real broker: KuaiRand in order and keyed, pacing, bad files."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaConsumer

from recoil.events import InteractionEvent, parse_event
from recoil.kafka_settings import KafkaSettings
from simulator.logs import read_event_log
from streams.harness import read_topic, write_jsonl

pytestmark = pytest.mark.integration

KUAIRAND = Path(__file__).resolve().parents[3] / "shared" / "data" / "kuairand_k15_likes_hates.tsv"


def replay(kafka: KafkaSettings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "recoil", "replay", *args,
         "--bootstrap-servers", kafka.bootstrap_servers],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def test_kuairand_is_replayed_keyed_by_user_in_per_user_order(
    kafka: KafkaSettings, topic_name: Callable[[str], str]
) -> None:
    topic = topic_name("kuairand")
    done = replay(kafka, str(KUAIRAND), "--topic", topic, "--limit", "3000", "--partitions", "3")
    assert done.returncode == 0, done.stderr
    assert "replayed 3000 events" in done.stdout
    records = read_topic(kafka, topic, lambda rs: len(rs) >= 3000, 60)
    assert len(records) == 3000
    by_user: dict[str, list[InteractionEvent]] = defaultdict(list)
    partitions: dict[str, set[int]] = defaultdict(set)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        event = parse_event(record.value)
        assert isinstance(event, InteractionEvent)
        assert record.key == event.user_id.encode()
        by_user[event.user_id].append(event)
        partitions[event.user_id].add(record.partition)
    expected: dict[str, list[InteractionEvent]] = defaultdict(list)
    for event in itertools.islice(read_event_log(KUAIRAND), 3000):
        expected[event.user_id].append(event)
    assert by_user == expected  # every event, each user's in file order
    assert all(len(p) == 1 for p in partitions.values())  # one partition per user
    assert len({p for ps in partitions.values() for p in ps}) == 3


def test_speed_scales_the_logged_gaps(
    kafka: KafkaSettings, topic_name: Callable[[str], str], tmp_path: Path
) -> None:
    topic = topic_name("paced")
    events = [
        InteractionEvent(
            event_id=f"e{n}", user_id="u", item_id=f"i{n}", creator_id="c", cluster_id=None,
            timestamp=1_700_000_000.0 + 2.0 * n, surface="home", dwell_seconds=1.0,
            item_duration_seconds=10.0, liked=False, disliked=False, dismissed=False,
        )
        for n in range(4)
    ]  # fmt: skip
    log = write_jsonl(tmp_path / "paced.jsonl", [e.to_json() for e in events])
    started = time.monotonic()
    done = replay(kafka, str(log), "--topic", topic, "--speed", "4")
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started >= 1.5  # 3 gaps of 2 s at 4x: 1.5 s at least
    consumer = KafkaConsumer(topic, **kafka.kafka_python(), auto_offset_reset="earliest",
                             consumer_timeout_ms=10_000)  # fmt: skip
    stamps = [r.timestamp / 1000 for r in itertools.islice(consumer, 4)]
    consumer.close()
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert all(0.4 <= gap <= 1.0 for gap in gaps), gaps  # 0.5 s each, with scheduling slack


def test_bad_files_fail_with_the_reason(
    kafka: KafkaSettings, topic_name: Callable[[str], str], tmp_path: Path
) -> None:
    missing = replay(kafka, str(tmp_path / "nope.jsonl"), "--topic", topic_name("x"))
    assert missing.returncode == 2
    assert "nope.jsonl: no such file" in missing.stderr
    bad = write_jsonl(tmp_path / "bad.jsonl", [b'{"event_id": "x"}'])
    broken = replay(kafka, str(bad), "--topic", topic_name("bad"))
    assert broken.returncode == 1
    assert "bad.jsonl:1" in broken.stdout
    mapped = replay(kafka, str(KUAIRAND), "--topic", topic_name("m"), "--map", "nonsense")
    assert mapped.returncode == 2
    assert "--map 'nonsense'" in mapped.stderr
