"""Three stream-worker claims against the real broker that had no test of their own:

- an event whose processing raises (here: a corrupt stored user state, planted in
  the table's changelog) goes to the DLQ as ``processing_error`` and the worker
  carries on with everyone else;
- a worker refuses a changelog whose partition count differs from its input
  topic's (the table would put users on the wrong workers) and exits with the
  configuration-error status, without restarting;
- at-least-once mode survives a SIGKILL: after a restart every expected example is
  in the output (repeats allowed, nothing lost) and every user's history is exact.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from recoil.broker.embedded import free_port
from recoil.core.errors import ConfigError
from recoil.core.kafka_settings import KafkaSettings
from recoil.core.processes import ProcessGroup
from recoil.core.records import TrainingExample
from streams.config import StreamsConfig
from streams.dlq import DeadLetter
from streams.harness import (
    create_topics,
    describe_difference,
    get_json,
    metric,
    produce,
    scrape,
    start_worker,
    synthetic_events,
    wait_until,
    worker_argv,
)
from streams.topics import changelog_topic, prepare_topics
from tests.support.streams import (
    expected_output,
    fast_worker_config,
    feed_until_processed,
    kill_and_restart,
    metrics_url,
    processed,
    read_to_end,
    settled_output,
    small_at_least_once_config,
    stored_events,
    watched_event,
    worker_topics,
)

pytestmark = pytest.mark.integration


def _create_changelog(kafka: KafkaSettings, config: StreamsConfig, partitions: int) -> None:
    admin = KafkaAdminClient(**kafka.kafka_python())
    try:
        admin.create_topics([NewTopic(changelog_topic(config), partitions, 1)])
        # A loaded broker can answer the create before its metadata lists the topic;
        # the checks below must see it, so wait (bounded) until they can.
        deadline = time.monotonic() + 30
        while changelog_topic(config) not in admin.list_topics():
            assert time.monotonic() < deadline, "the changelog topic never appeared"
            time.sleep(0.2)
    finally:
        admin.close()


def test_a_processing_error_is_dead_lettered_and_the_rest_flows(
    kafka: KafkaSettings, topic_name: Callable[[str], str], tmp_path: Path
) -> None:
    config = small_at_least_once_config(topic_name, tmp_path / "data")
    create_topics(kafka, config)
    _create_changelog(kafka, config, partitions=2)
    # mallory's stored state is not a user state at all; the default partitioner puts it
    # in the changelog partition that matches mallory's input partition (both have 2)
    produce(kafka, changelog_topic(config), [(b"mallory", b'{"v": "not a state"}')])
    bad = watched_event(1, "mallory", "mallory1")
    records = [(b"dora", watched_event(1, "dora", "dora1")), (b"mallory", bad),
               (b"dora", watched_event(2, "dora", "dora2"))]  # fmt: skip
    with ProcessGroup(tmp_path / "logs") as group:
        worker = start_worker(group, "worker", kafka, config)
        placed = produce(kafka, config.input_topic, records)
        url = metrics_url(config)
        wait_until(lambda: processed(url) == 3, 120, "three events processed", [worker])
        examples = settled_output(kafka, config)  # input committed: the sends are acked
        letters = read_to_end(kafka, config.dlq_topic)
        samples = scrape(url)
        group.check()  # still running

    assert len(letters) == 1
    letter = DeadLetter.from_record(letters[0].key, letters[0].value, letters[0].headers)
    assert letter.code == "processing_error"
    assert letter.reason.startswith("ValueError: unknown user state layout")
    assert letter.key == b"mallory" and letter.is_original(bad)
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (
        config.input_topic, *placed[1],
    )  # fmt: skip
    assert sorted(TrainingExample.from_json(v).event_id for v in examples) == ["dora1", "dora2"]
    assert metric(samples, "recoil_stream_invalid_events_total", reason="processing_error") == 1
    assert metric(samples, "recoil_stream_dlq_events_total") == 1


def test_a_changelog_with_another_partition_count_is_refused(
    kafka: KafkaSettings, topic_name: Callable[[str], str], tmp_path: Path
) -> None:
    config = StreamsConfig(
        **worker_topics(topic_name), data_dir=tmp_path / "data", partitions=4, web_port=free_port()
    )
    create_topics(kafka, config)  # the input has 4 partitions
    _create_changelog(kafka, config, partitions=2)
    with pytest.raises(ConfigError) as refused:
        prepare_topics(kafka, config)
    assert str(refused.value) == (
        f"changelog topic {changelog_topic(config)!r} has 2 partitions but input topic "
        f"{config.input_topic!r} has 4: the table would put users on the wrong workers. "
        "Use a new --app-id (or delete the changelog topic)."
    )
    # the worker command (supervised, as deployed) stops with status 2 and says why
    done = subprocess.run(
        worker_argv(kafka, config), capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "configuration error: changelog topic" in done.stderr
    assert done.stderr.count("configuration error") == 1  # not restarted


def test_at_least_once_survives_a_sigkill(
    kafka: KafkaSettings, topic_name: Callable[[str], str], tmp_path: Path
) -> None:
    events = synthetic_events(3000, users=40, seed=31)
    users = sorted({e.user_id for e in events})
    config = fast_worker_config(
        **worker_topics(topic_name, "alo"), data_dir=tmp_path / "alo",
        processing_guarantee="at_least_once",
    )  # fmt: skip
    create_topics(kafka, config)
    after_kill = threading.Event()  # the last 1,400 events wait for the kill
    with ProcessGroup(tmp_path / "logs") as group:
        victim = start_worker(group, "worker", kafka, config)
        producer = feed_until_processed(
            kafka, config, events, chunk=200, pause=0.3, count=900, children=[victim],
            gate=(1600, after_kill),
        )  # fmt: skip
        assert producer.is_alive(), "the kill must land mid-stream"
        kill_and_restart(group, victim, kafka, config)
        after_kill.set()
        producer.join(timeout=120)
        got = settled_output(kafka, config)
        histories = {u: get_json(f"http://127.0.0.1:{config.web_port}/history/{u}")["history"]
                     for u in users}  # fmt: skip
        group.check()
        logs = "\n".join(f"--- {c.log_file} ---\n{c.log_tail(80)}" for c in group.children)
        stored = stored_events(kafka, config.input_topic)

    # The pure rule on the input as the broker stores it (each user's order): a producer
    # retry that reordered the input is not the worker's doing. Say so if it happened.
    expected, states = expected_output(stored)
    same_order = all([e for e in stored if e.user_id == u] == [e for e in events if e.user_id == u]
                     for u in users)  # fmt: skip
    reordered = "" if same_order else "(the input was stored reordered) "
    counts = Counter(got)
    difference = describe_difference(sorted(counts), expected)
    assert set(counts) == set(expected), (
        f"an example was lost (or invented) {reordered}: {difference}\n{logs}"
    )
    # a repeat is the same example again, never a different one for the same event
    by_event = Counter(json.loads(v)["event_id"] for v in counts)
    assert max(by_event.values()) == 1
    assert histories == {u: [h.to_row() for h in states[u].history] for u in states}
