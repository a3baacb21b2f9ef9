"""``recoil replay`` on the real broker: KuaiRand in time order and keyed, one example per
row through a real worker, pacing, bad files."""

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

from recoil.core.events import InteractionEvent, parse_event
from recoil.core.kafka_settings import KafkaSettings
from recoil.core.processes import ProcessGroup
from recoil.core.records import TrainingExample
from simulator.logs import read_event_log
from streams.harness import create_topics, read_topic, start_worker, wait_until, write_jsonl
from streams.replay import time_ordered
from tests.support.streams import (
    fast_worker_config,
    metrics_url,
    processed,
    scrape_outcomes,
    worker_topics,
)

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
    for event in time_ordered(itertools.islice(read_event_log(KUAIRAND), 3000)).events:
        expected[event.user_id].append(event)
    assert by_user == expected  # every event, each user's in time order
    assert all(len(p) == 1 for p in partitions.values())  # one partition per user
    assert len({p for ps in partitions.values() for p in ps}) == 3


def kuairand_slice(path: Path, users: int) -> Path:
    """The rows of the file's first ``users`` users (in order of first appearance), header kept:
    for the first 60, 4,044 rows of which 2,214 are older than an earlier row of their user."""
    lines = KUAIRAND.read_text().splitlines(keepends=True)
    first: dict[str, None] = {}
    for line in lines[1:]:
        first.setdefault(line.split("\t", 1)[0], None)
    chosen = set(list(first)[:users])
    path.write_text(lines[0] + "".join(x for x in lines[1:] if x.split("\t", 1)[0] in chosen))
    return path


def test_kuairand_through_a_worker_yields_one_example_per_row(
    kafka: KafkaSettings, topic_name: Callable[[str], str], tmp_path: Path
) -> None:
    """The file is not in time order within a user; replay sorts it, so the worker drops
    nothing as out_of_order (docs/streams.md has the same run on the whole file)."""
    log = kuairand_slice(tmp_path / "slice.tsv", users=60)
    rows = 4044
    config = fast_worker_config(**worker_topics(topic_name, "kr"), data_dir=tmp_path / "worker")
    create_topics(kafka, config)
    raw = replay(kafka, str(log), "--topic", topic_name("raw"), "--keep-file-order")
    assert raw.returncode == 0, raw.stderr
    assert "warning: 2214 of 4044 events were sent after a newer event" in raw.stderr
    with ProcessGroup(tmp_path / "logs") as group:
        worker = start_worker(group, "worker", kafka, config)
        done = replay(kafka, str(log), "--topic", config.input_topic)
        assert done.returncode == 0, done.stderr
        assert "2214 were older than an earlier event of the same user" in done.stdout
        assert f"replayed {rows} events" in done.stdout and "reordered 2214, late 0" in done.stdout
        url = metrics_url(config)
        wait_until(lambda: processed(url) >= rows, 120, f"{rows} events through", [worker])
        outcomes = scrape_outcomes(url)
        examples = read_topic(kafka, config.output_topic, lambda rs: len(rs) >= rows, 60)
        group.check()
    assert outcomes["out_of_order"] == 0 and outcomes["duplicate"] == 0
    assert outcomes["positive"] + outcomes["dislike"] == rows  # every row is a like or a hate
    ids = [TrainingExample.from_json(r.value).event_id for r in examples]
    assert len(ids) == rows and len(set(ids)) == rows  # one example per row, none twice


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
    assert "nope.jsonl: no such log file" in missing.stderr
    bad = write_jsonl(tmp_path / "bad.jsonl", [b'{"event_id": "x"}'])
    broken = replay(kafka, str(bad), "--topic", topic_name("bad"))
    assert broken.returncode == 1
    assert "bad.jsonl:1" in broken.stdout
    mapped = replay(kafka, str(KUAIRAND), "--topic", topic_name("m"), "--map", "nonsense")
    assert mapped.returncode == 2
    assert "--map 'nonsense'" in mapped.stderr
    big = replay(kafka, str(KUAIRAND), "--topic", topic_name("big"), "--max-sort-events", "1000")
    assert big.returncode == 2
    assert "has more than 1,000 events, too many to sort" in big.stderr
    assert "--keep-file-order" in big.stderr
