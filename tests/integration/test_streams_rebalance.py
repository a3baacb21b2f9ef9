"""Two workers, one added and one removed mid-stream: the exact output, no duplicates.

Faust's rebalances are where it hangs (faust #532) and processes events twice
(#502). Here a second worker joins while events flow, takes half the
partitions (recovering their tables from the changelog), and leaves again
(SIGTERM, a scale-down) while events still flow; the first worker gets them
back. The output (read_committed) must equal the pure rule's, each example
once, and every user's history served by the remaining worker's view must be
the final state the rule predicts.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from recoil.broker.embedded import free_port
from recoil.core.kafka_settings import KafkaSettings
from recoil.core.processes import ProcessGroup
from streams.config import StreamsConfig
from streams.harness import (
    create_topics,
    describe_difference,
    get_json,
    metric,
    scrape,
    start_worker,
    synthetic_events,
    wait_until,
)
from tests.support.streams import (
    expected_output,
    fast_worker_config,
    feed_until_processed,
    metrics_url,
    paced_producer,
    read_to_end,
    settled_output,
    worker_topics,
)

pytestmark = pytest.mark.integration


def caught_up(config: StreamsConfig) -> bool:
    """The worker reports lag 0 on every partition of its input topic."""
    samples = scrape(metrics_url(config))
    lags = [metric(samples, "recoil_stream_consumer_lag_messages", topic=config.input_topic,
                   partition=str(p)) for p in range(config.partitions)]  # fmt: skip
    return all(lag == 0 for lag in lags)


def test_worker_joins_and_leaves_mid_stream(
    kafka: KafkaSettings, topic_name: Callable[[str], str], tmp_path: Path
) -> None:
    events = synthetic_events(6000, users=80, seed=23)
    expected, states = expected_output(events)
    first = fast_worker_config(**worker_topics(topic_name), data_dir=tmp_path / "first")
    second = replace(
        first, data_dir=tmp_path / "second", web_port=free_port(), metrics_port=free_port()
    )
    phases = [events[:2000], events[2000:4000], events[4000:]]
    create_topics(kafka, first)
    with ProcessGroup(tmp_path / "logs") as group:
        one = start_worker(group, "first", kafka, first)
        feed_until_processed(
            kafka, first, phases[0], chunk=100, pause=0.2, count=500, children=[one]
        ).join(timeout=120)
        # A second worker joins while events keep coming.
        two = start_worker(group, "second", kafka, second)
        # the input both read; the count is the second worker's
        feeding = feed_until_processed(kafka, second, phases[1], chunk=100, pause=0.2,
                                       count=200, children=[one, two], timeout=180)  # fmt: skip
        feeding.join(timeout=120)
        # Either worker answers for every user, the owner directly and the other by
        # forwarding, with the history the rule predicts after the first two phases.
        _, mid_states = expected_output([*phases[0], *phases[1]])
        want = {u: [h.to_row() for h in mid_states[u].history] for u in sorted(mid_states)}
        for port in (first.web_port, second.web_port):
            what = f"the history view on port {port} to show phases 1-2"
            wait_until(partial(_views_show, port, want), 120, what, [one, two])
        # ... and leaves again, gracefully, while events keep coming.
        feeding = paced_producer(kafka, first.input_topic, phases[2], chunk=100, pause=0.2)
        started_leaving = time.monotonic()
        assert group.stop(two, sig=signal.SIGTERM) == 0
        left_in = time.monotonic() - started_leaving
        group.children.remove(two)
        feeding.join(timeout=180)
        got = settled_output(kafka, first)
        wait_until(lambda: caught_up(first), 60, "lag 0", [one])
        histories = {u: get_json(f"http://127.0.0.1:{first.web_port}/history/{u}")["history"]
                     for u in sorted(states)}  # fmt: skip
        samples = scrape(metrics_url(first))
        group.check()

    assert left_in < 20, f"the leaving worker took {left_in:.1f}s to stop (rebalance hang?)"
    assert got == expected, describe_difference(got, expected)
    assert histories == {u: [h.to_row() for h in states[u].history] for u in histories}
    assert metric(samples, "recoil_stream_events_total", outcome="invalid") == 0
    assert read_to_end(kafka, first.dlq_topic) == []  # to its end offsets, not for a while


def _views_show(port: int, want: dict[str, list[Any]]) -> bool:
    """The worker on ``port`` serves exactly ``want``'s history for each of its users."""
    return all(get_json(f"http://127.0.0.1:{port}/history/{u}")["history"] == h
               for u, h in want.items())  # fmt: skip
