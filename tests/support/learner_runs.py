"""``recoil learn`` as a child process for the integration tests: its input, the wait on
it, and what its lineage logs say it trained."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from kafka import KafkaProducer

from recoil.core.kafka_settings import KafkaSettings
from recoil.core.records import TrainingExample
from tests.support.offsets import end_and_committed


def learner_group(topic: str) -> str:
    """The learner's consumer group on the test's own ``topic``: a group per test, since a
    learner of an earlier test that joined its group as a static member stays in it for a
    session timeout and refuses this test's commits (docs/operations.md), which would fail
    the committed-offset checks for no fault of the test."""
    return f"learn-{topic}"


def learner_offsets(
    kafka: KafkaSettings, topic: str, partitions: int
) -> tuple[dict[int, int], dict[int, int | None]]:
    """(end offset, the learner group's committed offset) per partition of ``topic``."""
    return end_and_committed(kafka, topic, learner_group(topic), partitions)


@contextlib.contextmanager
def learner_process(
    kafka: KafkaSettings, topic: str, store: Path, log: Path, *extra: str
) -> Iterator[subprocess.Popen[bytes]]:
    """``recoil learn`` in ``learner_group(topic)`` with a small model, snapshots every 5
    steps, in its own session (so every rank dies with it, as on a lost node), output
    appended to ``log``; killed on exit."""
    argv = [
        sys.executable, "-m", "recoil", "learn", "--bootstrap-servers", kafka.bootstrap_servers,
        "--topic", topic, "--group", learner_group(topic), "--store", str(store),
        "--model-updates-topic", "", "--batch-size", "8", "--batch-timeout", "0.2",
        "--snapshot-every-steps", "5", "--embedding-dim", "16", "--hidden-dim", "16",
        "--max-len", "20", "--threads", "1", *extra,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    with log.open("ab") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def produce_examples(
    kafka: KafkaSettings, topic: str, examples: list[TrainingExample], chunk: int, pause: float
) -> None:
    """Send ``examples`` keyed by user, ``chunk`` at a time, pausing after each."""
    producer = KafkaProducer(**kafka.kafka_python(), acks="all", linger_ms=5)
    for start in range(0, len(examples), chunk):
        for e in examples[start : start + chunk]:
            producer.send(topic, key=e.user_id.encode(), value=e.to_json())
        producer.flush()
        time.sleep(pause)
    producer.close()


def wait_for(condition: Callable[[], bool], timeout: float, what: str, log: Path) -> None:
    """Poll ``condition`` until it holds; past ``timeout`` seconds fail with the learner's log."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; learner log:\n{log.read_text()}")
        time.sleep(0.05)


def lineage_entries(checkpoints: Path) -> dict[str, list[dict[str, object]]]:
    """Each lineage log's entries (``trained.jsonl``, ``trained.rank1.jsonl``, ...), by name."""
    return {
        path.name: [json.loads(line) for line in path.read_text().splitlines()]
        for path in sorted(checkpoints.glob("trained*.jsonl"))
    }


def trained_ids(checkpoints: Path) -> Counter[str]:
    """How many times the model's lineage, every rank's, trained each event id."""
    return Counter(
        i
        for entries in lineage_entries(checkpoints).values()
        for entry in entries
        for i in entry["event_ids"]  # type: ignore[attr-defined]
    )
