"""SIGKILL a worker mid-stream and restart it: the output equals an uninterrupted run's.

Both runs read the same input at the same time (different app ids and output
topics). Outputs are read with ``read_committed``; equality is on the full list
of records, so a lost example and a repeated one both fail. Exactly-once with
the RocksDB store: the restart also exercises the unclean-shutdown rule (local
table files deleted, the table rebuilt from committed changelog data).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from recoil.core.kafka_settings import KafkaSettings
from recoil.core.processes import ProcessGroup
from recoil.core.records import TrainingExample
from streams.harness import (
    create_topics,
    describe_difference,
    start_worker,
    synthetic_events,
)
from tests.support.streams import (
    expected_output,
    fast_worker_config,
    feed_until_processed,
    kill_and_restart,
    settled_output,
    stored_events,
    worker_topics,
)

pytestmark = pytest.mark.integration


def test_sigkill_mid_stream_loses_and_repeats_nothing(
    kafka: KafkaSettings, topic_name: Callable[[str], str], tmp_path: Path
) -> None:
    events = synthetic_events(4000, users=60, seed=11)
    # two groups on the same input, each with its own output, DLQ, data and ports
    killed = fast_worker_config(**worker_topics(topic_name, "killed"), data_dir=tmp_path / "killed")
    reference = fast_worker_config(
        **worker_topics(topic_name, "reference"), data_dir=tmp_path / "reference"
    )
    create_topics(kafka, killed)
    with ProcessGroup(tmp_path / "logs") as group:
        victim = start_worker(group, "killed", kafka, killed)
        start_worker(group, "reference", kafka, reference)
        producer = feed_until_processed(
            kafka, killed, events, chunk=200, pause=0.4, count=1200, children=[victim]
        )
        restarted = kill_and_restart(group, victim, kafka, killed)
        producer.join(timeout=120)
        got_killed = settled_output(kafka, killed)
        got_reference = settled_output(kafka, reference)
        group.check()  # the reference worker and the restarted one are still up
        log = restarted.log_file.read_text()
        # the pure rule on the input as stored (each user's order), whatever the producer did
        expected, _ = expected_output(stored_events(kafka, killed.input_topic))

    # The uninterrupted run is the pure rule, exactly; so is the killed-and-restarted one.
    assert got_reference == expected, describe_difference(got_reference, expected)
    assert got_killed == got_reference, describe_difference(got_killed, expected)
    assert len({TrainingExample.from_json(v).event_id for v in got_killed}) == len(expected)
    assert "no clean shutdown recorded" in log  # local RocksDB state was not trusted
