"""``recoil learn --devices 2`` on the real broker: two gloo ranks, each its own partitions.

Both ranks are real processes (Lightning's launcher starts rank 1 by re-running the
command line); examples are real Kafka records on a 4-partition topic. Checked from
the outside: the ranks' lineage logs, the checkpoint, the store and the group's
committed offsets.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch
from kafka import KafkaProducer
from prometheus_client import CollectorRegistry

from learner.continuous import LearnerConfig, SourceConfig, read_resume_state, run_learner
from learner.metrics import LearnerMetrics
from learner.snapshot import latest_version, list_versions, load_snapshot
from learner.synthetic import synthetic_examples
from recoil.core.kafka_settings import KafkaSettings
from recoil.core.records import TrainingExample
from tests.support.learner_runs import (
    learner_group,
    learner_offsets,
    learner_process,
    lineage_entries,
    produce_examples,
    trained_ids,
    wait_for,
)

pytestmark = pytest.mark.integration

PARTITIONS = 4  # of the examples_topic fixture (tests/conftest.py)


def _items(examples: list[TrainingExample]) -> set[str]:
    """Every item the examples mention, as labels or in histories."""
    return {e.label_item_id for e in examples} | {h.item_id for e in examples for h in e.history}


def test_two_ranks_read_disjoint_partitions_and_every_example_once(
    kafka: KafkaSettings, examples_topic: str, tmp_path: Path
) -> None:
    examples = synthetic_examples(num_users=16, events_per_user=12, num_items=80, seed=11)
    produce_examples(kafka, examples_topic, examples, chunk=len(examples), pause=0.0)
    store, log = tmp_path / "store", tmp_path / "learner.log"
    checkpoints = store / "checkpoints"
    stop_when_idle = ("--devices", "2", "--stop-when-idle", "2")
    with learner_process(kafka, examples_topic, store, log, *stop_when_idle) as run:
        assert run.wait(240) == 0, log.read_text()

    # each rank read exactly its own partitions (p % 2 == rank), and nothing else
    lineages = lineage_entries(checkpoints)
    assert set(lineages) == {"trained.jsonl", "trained.rank1.jsonl"}
    for name, rank in (("trained.jsonl", 0), ("trained.rank1.jsonl", 1)):
        read = {int(p) for entry in lineages[name] for p in entry["offsets"]}  # type: ignore[attr-defined]
        assert read == {p for p in range(PARTITIONS) if p % 2 == rank}, name
    assert all(lineages.values()), "both ranks must have had examples"
    # together, every example exactly once
    trained = trained_ids(checkpoints)
    assert set(trained) == {e.event_id for e in examples}
    assert max(trained.values()) == 1
    # one checkpoint with both ranks' offsets; the group committed the same
    ends, committed = learner_offsets(kafka, examples_topic, PARTITIONS)
    state = read_resume_state(checkpoints / "last.ckpt")
    assert state.stream.offsets == ends == committed
    assert set(state.stream.lineage_files) == set(lineages)
    assert state.stream.examples_total == len(examples)
    # snapshots from rank 0 only: consecutive versions, one publish line each
    versions = list_versions(store)
    assert versions == list(range(1, len(versions) + 1)) and versions
    assert log.read_text().count("published snapshot v") == len(versions)
    snapshot = load_snapshot(store)
    assert snapshot.manifest["counts"]["examples"] == len(examples)
    # rank 0 published it: items that only rank 1's examples hold reached rank 0's
    # tables and metadata too
    rank1_ids = {i for x in lineages["trained.rank1.jsonl"] for i in x["event_ids"]}  # type: ignore[attr-defined]
    only_rank1 = _items([e for e in examples if e.event_id in rank1_ids]) - _items(
        [e for e in examples if e.event_id not in rank1_ids]
    )
    assert only_rank1 and only_rank1 <= set(snapshot.item_ids())
    assert all(snapshot.item_meta(i) is not None for i in only_rank1)

    # A restart with one process takes over both ranks' offsets and reads only what is new.
    more = synthetic_examples(num_users=6, events_per_user=8, num_items=100, seed=12)
    more = [dataclasses.replace(e, event_id=f"more-{e.event_id}") for e in more]
    produce_examples(kafka, examples_topic, more, chunk=len(more), pause=0.0)
    # in this process (one Python start less): the same run_learner the command calls
    torch.set_num_threads(1)
    config = LearnerConfig(
        store=store, checkpoint_dir=checkpoints, snapshot_every_steps=5, stop_when_idle_s=2.0,
        model_updates_topic=None,
    )  # fmt: skip
    source = SourceConfig(
        topic=examples_topic, group=learner_group(examples_topic), batch_size=8, batch_timeout_s=0.2
    )
    result = run_learner(kafka, config, source, LearnerMetrics(CollectorRegistry()))
    assert result.resumed_from_step == state.step
    assert (
        result.examples == len(more)
        and result.offsets == learner_offsets(kafka, examples_topic, PARTITIONS)[0]
    )
    trained = trained_ids(checkpoints)
    assert set(trained) == {e.event_id for e in examples + more}
    assert max(trained.values()) == 1, "a restart with fewer ranks repeats nothing"
    ends, committed = learner_offsets(kafka, examples_topic, PARTITIONS)
    state = read_resume_state(checkpoints / "last.ckpt")
    assert state.stream.offsets == ends == committed
    assert state.stream.lineage_files["trained.rank1.jsonl"] > 0, "rank 1's lineage is kept"
    assert load_snapshot(store).manifest["counts"]["examples"] == len(examples) + len(more)


def test_two_ranks_killed_mid_stream_resume_losing_and_repeating_nothing(
    kafka: KafkaSettings, examples_topic: str, tmp_path: Path
) -> None:
    examples = synthetic_examples(num_users=16, events_per_user=20, num_items=100, seed=13)
    store, log = tmp_path / "store", tmp_path / "learner.log"
    checkpoints = store / "checkpoints"

    def lineage_bytes() -> dict[str, int]:
        return {p.name: p.stat().st_size for p in checkpoints.glob("trained*.jsonl")}

    paced = threading.Event()  # set: stay at most 48 examples ahead of the learner
    paced.set()

    def produce() -> None:
        # paced by the learner, not the clock: a slow (loaded) machine still kills it
        # while examples are arriving, and a fast one does not run out of them first
        producer = KafkaProducer(**kafka.kafka_python(), acks="all", linger_ms=5)
        for start in range(0, len(examples), 8):
            while paced.is_set() and sum(trained_ids(checkpoints).values()) < start - 48:
                time.sleep(0.05)
            for e in examples[start : start + 8]:
                producer.send(examples_topic, key=e.user_id.encode(), value=e.to_json())
            producer.flush()
        producer.close()

    with learner_process(kafka, examples_topic, store, log, "--devices", "2") as first:
        producer = threading.Thread(target=produce)
        producer.start()
        wait_for(lambda: (latest_version(store) or 0) >= 2, 180, "two snapshots", log)
        assert producer.is_alive(), "the kill must land while examples are still arriving"

        def frozen_past_the_checkpoint() -> bool:
            # Freeze both ranks; kill only if some rank's lineage runs past what last.ckpt
            # covers, so the restart has trained work to roll back and redo.
            os.killpg(first.pid, signal.SIGSTOP)
            covered = read_resume_state(checkpoints / "last.ckpt").stream.lineage_files
            if any(size > covered.get(name, 0) for name, size in lineage_bytes().items()):
                return True
            os.killpg(first.pid, signal.SIGCONT)
            time.sleep(0.2)
            return False

        wait_for(frozen_past_the_checkpoint, 120, "a freeze between checkpoints", log)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(30)
    paced.clear()  # the rest arrives while no learner runs
    producer.join()
    killed = read_resume_state(checkpoints / "last.ckpt")
    killed_at = max(list_versions(store))
    kept = killed.stream.lineage_files
    cut = {name: size - kept.get(name, 0) for name, size in lineage_bytes().items()}
    assert any(n > 0 for n in cut.values())

    offset = len(log.read_text())
    with learner_process(kafka, examples_topic, store, log, "--devices", "2") as second:
        everything = {e.event_id for e in examples}
        wait_for(lambda: set(trained_ids(checkpoints)) >= everything, 240, "every example", log)
        # SIGTERM to rank 0 alone, as a container runtime sends it: every rank stops after
        # one final checkpoint and snapshot
        second.send_signal(signal.SIGTERM)
        assert second.wait(120) == 0, log.read_text()[offset:]
    restart = log.read_text()[offset:]
    assert "learner rank 1 stopped" in restart
    assert restart.count(f"resuming from {checkpoints / 'last.ckpt'}: step {killed.step}") == 2

    trained = trained_ids(checkpoints)
    assert set(trained) == {e.event_id for e in examples}, "nothing lost"
    assert max(trained.values()) == 1, "nothing trained twice in the model's lineage"
    rolled_back = sorted(p.name for p in checkpoints.glob("rolled_back*.jsonl"))
    assert rolled_back == sorted(
        n.replace("trained", "rolled_back") for n, size in cut.items() if size > 0
    )
    newest = load_snapshot(store)
    assert newest.version > killed_at and newest.step > killed.step
    assert newest.manifest["counts"]["examples"] == len(examples)
    ends, committed = learner_offsets(kafka, examples_topic, PARTITIONS)
    assert newest.offsets == ends == committed
