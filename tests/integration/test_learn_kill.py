"""``recoil learn`` killed with SIGKILL mid-run resumes from checkpoint + offsets, skipping
nothing, training nothing twice, and publishing versions above the last one."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import threading
import urllib.request
from pathlib import Path

import pytest

from learner.snapshot import latest_version, list_versions, load_snapshot
from learner.synthetic import synthetic_examples
from recoil.core.kafka_settings import KafkaSettings
from tests.support.learner_runs import (
    learner_offsets,
    learner_process,
    produce_examples,
    trained_ids,
    wait_for,
)

pytestmark = pytest.mark.integration

PARTITIONS = 2  # of the examples_topic fixture (tests/conftest.py)


def _learner(
    kafka: KafkaSettings, topic: str, store: Path, log: Path, *extra: str
) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    """``recoil learn`` with its metrics on a port it picks and prints."""
    return learner_process(kafka, topic, store, log, "--metrics-port", "0", *extra)


def _metrics_url(log: Path, start: int) -> str | None:
    found = re.findall(r"metrics: (http://\S+)", log.read_text()[start:])
    return found[0] if found else None


def _scrape(url: str, name: str) -> float | None:
    try:
        text = urllib.request.urlopen(url, timeout=2).read().decode()
    except OSError:
        return None
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


def test_killed_learner_resumes_exactly(
    kafka: KafkaSettings, examples_topic: str, tmp_path: Path
) -> None:
    examples = synthetic_examples(num_users=16, events_per_user=60, num_items=120, seed=5)
    store, log = tmp_path / "store", tmp_path / "learner.log"

    with _learner(kafka, examples_topic, store, log) as first:
        wait_for(lambda: _metrics_url(log, 0) is not None, 120, "the learner to start", log)
        producer = threading.Thread(
            target=produce_examples, args=(kafka, examples_topic, examples, 8, 0.1)
        )
        producer.start()
        lineage = store / "checkpoints" / "trained.jsonl"

        def between_checkpoints() -> bool:
            # Two snapshots out, and steps taken since the last checkpoint (every 5 steps):
            # the restart then has trained work to roll back and redo.
            steps = len(lineage.read_text().splitlines()) if lineage.exists() else 0
            return (latest_version(store) or 0) >= 2 and steps >= 12 and steps % 5 in (1, 2, 3)

        wait_for(between_checkpoints, 120, "two snapshots and a few steps more", log)
        assert producer.is_alive(), "the kill must land while examples are still arriving"

        def frozen_past_the_checkpoint() -> bool:
            # Freeze the learner and kill it only if its lineage on disk runs past the one
            # last.ckpt records (steps trained after it): the restart must then roll back
            # exactly that tail. A freeze right after a checkpoint lets it run on a little.
            first.send_signal(signal.SIGSTOP)
            if lineage.stat().st_size > _lineage_bytes(store):
                return True
            first.send_signal(signal.SIGCONT)
            return False

        wait_for(frozen_past_the_checkpoint, 120, "a freeze between checkpoints", log)
        first.send_signal(signal.SIGKILL)
        assert first.wait(30) == -signal.SIGKILL
    producer.join()
    killed_at = max(list_versions(store))
    checkpoint = _checkpoint_step(store)
    # what the killed learner left on disk beyond its checkpoint: the restart's rollback
    cut_tail = lineage.read_bytes()[_lineage_bytes(store) :]
    cut_steps = cut_tail.count(b"\n")  # whole entries; a torn last line is cut too
    assert cut_steps >= 1

    offset = len(log.read_text())
    with _learner(kafka, examples_topic, store, log, "--stop-when-idle", "4") as second:
        wait_for(lambda: _metrics_url(log, offset) is not None, 120, "the restart", log)
        url = _metrics_url(log, offset)
        assert url is not None
        wait_for(
            lambda: (_scrape(url, "recoil_learner_snapshot_version") or 0) > killed_at,
            120, "a snapshot after the restart", log,
        )  # fmt: skip
        assert (_scrape(url, "recoil_learner_steps_total") or 0) > 0
        assert second.wait(120) == 0, log.read_text()[offset:]

    restart_log = log.read_text()[offset:]
    assert f"resuming from {store / 'checkpoints' / 'last.ckpt'}: step {checkpoint}" in restart_log
    trained = trained_ids(store / "checkpoints")
    assert set(trained) == {e.event_id for e in examples}, "nothing skipped"
    assert max(trained.values()) == 1, "nothing trained twice in the model's lineage"
    # work after the checkpoint the model never kept: moved aside whole, then redone
    rolled_back = store / "checkpoints" / "rolled_back.jsonl"
    assert rolled_back.read_bytes() == cut_tail
    assert f"({cut_steps} lineage entries rolled back)" in restart_log
    redone = {i for line in cut_tail.decode().split("\n")[:cut_steps]
              for i in json.loads(line)["event_ids"]}  # fmt: skip
    assert redone and redone <= set(trained)
    versions = list_versions(store)
    assert versions[-1] > killed_at
    newest = load_snapshot(store)
    assert newest.step > checkpoint
    assert newest.manifest["counts"]["examples"] == len(examples)
    ends, committed = learner_offsets(kafka, examples_topic, PARTITIONS)
    assert newest.offsets == ends == committed


def _lineage_bytes(store: Path) -> int:
    """How much of trained.jsonl the checkpoint in ``store`` covers."""
    from learner.continuous import read_resume_state

    return read_resume_state(store / "checkpoints" / "last.ckpt").stream.lineage_bytes


def _checkpoint_step(store: Path) -> int:
    import torch

    ckpt = torch.load(store / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return int(ckpt["global_step"])


def test_sigterm_stops_after_a_final_checkpoint_and_snapshot(
    kafka: KafkaSettings, examples_topic: str, tmp_path: Path
) -> None:
    examples = synthetic_examples(num_users=4, events_per_user=30, num_items=40, seed=6)
    produce_examples(kafka, examples_topic, examples, chunk=len(examples), pause=0.0)
    store, log = tmp_path / "store", tmp_path / "learner.log"
    # Snapshots only on time (far off), so the one published comes from the stop itself.
    with _learner(kafka, examples_topic, store, log, "--snapshot-every-steps", "100000",
                  "--snapshot-every-seconds", "3600") as learner:  # fmt: skip
        lineage = store / "checkpoints" / "trained.jsonl"

        def trained_all() -> bool:
            text = lineage.read_text() if lineage.exists() else ""
            return sum(len(json.loads(x)["event_ids"]) for x in text.splitlines()) == len(examples)

        wait_for(trained_all, 120, "every example trained", log)
        assert list_versions(store) == []
        learner.send_signal(signal.SIGTERM)
        assert learner.wait(60) == 0, log.read_text()
    snapshot = load_snapshot(store)
    assert snapshot.version == 1
    assert snapshot.step == _checkpoint_step(store) > 0
    ends, committed = learner_offsets(kafka, examples_topic, PARTITIONS)
    assert snapshot.offsets == ends == committed
