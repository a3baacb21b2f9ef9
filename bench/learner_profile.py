"""Where the continuous learner's time goes: the real learner on records held in memory.

    python -m bench.learner_profile [--examples 20000] [--batch-size 256] [--threads 1]
        [--without-label-header] [--precision 32-true|bf16-mixed] [--softmax full|sampled]
        [--max-len N] [--top N]

Runs ``learner.continuous.run_learner`` (Lightning, the callback, snapshots: all of
it) under cProfile, with a stand-in for the Kafka consumer that hands it
training examples as the stream workers write them (a world's logged impressions,
windowed with 50 items of history, serialised to JSON). Kafka's own I/O is thus left
out; everything the learner does with a record is in. It prints the learner's
examples/s (first record handed out to the last one trained, less the waits below) and
the seconds spent decoding, batching, in the training step, in the per-batch callback
and publishing snapshots, and the step's time per *trained* example: the live arm
trains positives and dislikes, and in the medium world 57% of examples are skips it
counts but does not train (reading them from their label header, as the workers write
it; ``--without-label-header`` decodes every record whole, as for another producer).
Once every example is handed out, the learner waits for more before it trains the last
batch (the short batch's ``batch_timeout_s``, then an idle tick for Lightning's
look-ahead fetch): ~1.5 s that are not the learner's work, and
were counted before (3,111 examples/s measured, where the work ran at ~5,400). Not a
``recoil bench`` command: it patches the learner's consumer factory.
"""

from __future__ import annotations

import argparse
import cProfile
import math
import pstats
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

from bench.learner_flags import add_learner_arguments, model_overrides
from learner.example_consumer import Fetched
from learner.precision import Precision
from recoil.core.kafka_settings import KafkaSettings

# (module, owner class or None, function) -> what the row is called
PHASES = (
    (("learner.kafka_source", "KafkaExampleSource", "_decode"), "decode (JSON -> example, checks)"),
    (("learner.stream_training", None, "encode_batch"), "batching (ids -> tensors)"),
    (("learner.stream_training", "ContinuousModule", "on_train_batch_start"), "table growth"),
    (("learner.stream_training", "ContinuousModule", "training_step"), "training step"),
    (("learner.continuous_loop", "ContinuousLoop", "on_train_batch_end"), "per-batch callback"),
    (("learner.continuous_loop", "ContinuousLoop", "publish"), "  of which checkpoint + snapshot"),
)


def _timed(seconds: dict[str, float], label: str, function: Any) -> Any:
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            seconds[label] += time.perf_counter() - started

    return timed


def _time_phases() -> dict[str, float]:
    """Wrap each phase's function in a timer; seconds per phase, filled as the run goes."""
    import importlib

    seconds = dict.fromkeys((label for _, label in PHASES), 0.0)
    for (module_name, owner_name, name), label in PHASES:
        module = importlib.import_module(module_name)
        owner = getattr(module, owner_name) if owner_name else module
        setattr(owner, name, _timed(seconds, label, getattr(owner, name)))
    return seconds


class WorkerRecord(NamedTuple):
    """A training-example record as a stream worker writes it."""

    key: str  # the user id
    value: bytes  # the example's JSON
    headers: list[tuple[str, bytes]]  # the LABEL_HEADER


class MemoryConsumer:
    """An ``ExampleConsumer`` (``learner.example_consumer``) over records held in memory,
    keyed to ``partitions`` as Kafka's default partitioner would not (CRC-32, enough to
    spread users)."""

    def __init__(self, topic: str, values: list[WorkerRecord], partitions: int = 4) -> None:
        self.topic = topic
        self.records: list[list[WorkerRecord]] = [[] for _ in range(partitions)]
        for record in values:
            self.records[zlib.crc32(record.key.encode()) % partitions].append(record)
        self.position_of = dict.fromkeys(range(partitions), 0)
        self.total = len(values)
        self.handed = 0
        self.first_at: float | None = None
        self.sleeps: list[tuple[float, float]] = []  # (when a sleep ended, its seconds)
        self._on_assigned: Callable[[list[int]], Mapping[int, int]] | None = None
        self._assigned = False

    def subscribe(
        self,
        on_assigned: Callable[[list[int]], Mapping[int, int]],
        on_revoked: Callable[[set[int]], None],
    ) -> None:
        self._on_assigned = on_assigned

    def unsubscribe(self) -> None:
        self._assigned = False

    def assign(self, start: Mapping[int, int | None]) -> None:
        self._assigned = True
        self._start(start)

    def _start(self, start: Mapping[int, int | None]) -> None:
        for partition, offset in start.items():
            if offset is not None:
                self.position_of[partition] = max(0, offset)  # FROM_BEGINNING is -2

    def assignment(self) -> set[int]:
        return set(self.position_of) if self._assigned else set()

    def poll(self, timeout_ms: int, max_records: int) -> list[Fetched]:
        if not self._assigned and self._on_assigned is not None:
            self._assigned = True
            self._start(self._on_assigned(sorted(self.position_of)))
        if self.first_at is None:
            self.first_at = time.perf_counter()
        out: list[Fetched] = []
        for partition, start in self.position_of.items():
            chunk = self.records[partition][start : start + max_records - len(out)]
            out += [(partition, start + i, r.value, r.headers) for i, r in enumerate(chunk)]
            self.position_of[partition] = start + len(chunk)
        self.handed += len(out)
        if not out:
            time.sleep(timeout_ms / 1000)
            self.sleeps.append((time.perf_counter(), timeout_ms / 1000))
        return out

    def slept_before(self, moment: float) -> float:
        """Seconds this consumer slept in ``poll`` before ``moment``: once everything is
        handed out, the learner waits here for more before training its last batch."""
        return sum(seconds for ended, seconds in self.sleeps if ended <= moment)

    def position(self, partition: int) -> int:
        return self.position_of[partition]

    def highwater(self, partition: int) -> int | None:
        """As a Kafka client: known once the partition has been fetched from."""
        return len(self.records[partition]) if self.first_at is not None else None

    def end_offsets(self, partitions: Collection[int]) -> dict[int, int]:
        return {p: len(self.records[p]) for p in partitions}

    def partitions(self) -> set[int]:
        return set(self.position_of)

    def commit(self, offsets: Mapping[int, int]) -> None:
        pass

    def close(self) -> None:
        pass


def worker_examples(
    count: int, world_name: str = "medium", label_header: bool = True
) -> list[WorkerRecord]:
    """``count`` example records as the stream workers write them (with the
    ``LABEL_HEADER``, unless ``label_header`` is False: as another producer might), in
    time order (users interleaved, as a replay in time order makes them)."""
    from recoil.core.labels import LabelConfig
    from recoil.core.records import LABEL_HEADER
    from recoil.core.windows import events_to_examples
    from simulator.logged_data import simulate_logs
    from simulator.policy import LoggingPolicyConfig
    from simulator.world import World, world_preset

    world = World(world_preset(world_name))
    steps = world.config.steps_per_user
    # enough users that a time-ordered prefix of ``count`` examples mixes them as the
    # workers' output does (examples_per_event ~0.75)
    users = range(min(world.config.num_users, max(50, math.ceil(count / steps / 0.7))))
    events = simulate_logs(world, LoggingPolicyConfig(), users=users, steps=steps).events
    examples = sorted(events_to_examples(events, LabelConfig()), key=lambda e: e.timestamp)
    return [
        WorkerRecord(
            e.user_id, e.to_json(), [(LABEL_HEADER, e.label_json())] if label_header else []
        )
        for e in examples[:count]
    ]


def produce_worker_examples(
    settings: KafkaSettings,
    topic: str,
    values: list[WorkerRecord],
    linger_ms: int,
    batch_size: int,
) -> None:
    """Write ``values`` into ``topic`` as the workers do (keyed by user, with their
    headers); ``linger_ms`` and ``batch_size`` shape the record batches."""
    from kafka import KafkaProducer

    producer = KafkaProducer(**settings.kafka_python(), linger_ms=linger_ms, batch_size=batch_size)
    for record in values:
        producer.send(topic, key=record.key.encode(), value=record.value, headers=record.headers)
    producer.flush()
    producer.close()


def trained_by_arm(values: list[bytes], arm: str) -> int:
    """How many of these examples have a label ``arm`` trains (a positive always; a
    dislike or a skip only where the arm takes it as a not-to-recommend label)."""
    import orjson

    from learner.arms import resolve_arm

    kinds = resolve_arm(arm).trained_kinds
    return sum(orjson.loads(v)["label_kind"] in kinds for v in values)


class _Timed:
    """LearnerMetrics that notes when the last example was counted."""

    def __init__(self, metrics: Any) -> None:
        self.metrics = metrics
        self.last_at = 0.0
        self.counted = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.metrics, name)

    def record_step(self, examples: int, *args: Any, **kwargs: Any) -> None:
        self._count(examples)
        self.metrics.record_step(examples, *args, **kwargs)

    def record_consumed(self, examples: int, *args: Any, **kwargs: Any) -> None:
        self._count(examples)
        self.metrics.record_consumed(examples, *args, **kwargs)

    def _count(self, examples: int) -> None:
        if examples:  # idle ticks (0 examples) come after the last one trained
            self.counted += examples
            self.last_at = time.perf_counter()


class _ReferenceDecoder:
    """``learner.example_check.decode_example`` in the decoder's place (before/after)."""

    def __init__(self, max_bytes: int, max_history: int) -> None:
        self.max_bytes, self.max_history = max_bytes, max_history

    def __call__(self, value: bytes | None) -> Any:
        from learner.example_check import decode_example

        return decode_example(value, self.max_bytes, self.max_history)


def profile(
    count: int,
    batch_size: int,
    threads: int,
    reference: bool = False,
    cprofile: bool = False,
    label_header: bool = True,
    precision: Precision = "32-true",
    softmax: str = "full",
    model: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the learner on ``count`` in-memory examples (under cProfile if asked);
    ``model``: ModelConfig fields to set on the live default model, as recoil learn's
    flags would."""
    import torch
    from prometheus_client import CollectorRegistry

    import learner.continuous as continuous
    import learner.kafka_source as kafka_source

    if reference:
        kafka_source.ExampleDecoder = _ReferenceDecoder  # type: ignore[assignment,misc]
    from learner.continuous import LearnerConfig, SourceConfig, run_learner
    from learner.metrics import LearnerMetrics
    from recoil.core.kafka_settings import KafkaSettings

    torch.set_num_threads(threads)
    values = worker_examples(count, label_header=label_header)
    size = sum(len(r.value) for r in values) / len(values)
    print(f"{len(values):,} examples, {size:,.0f} bytes of JSON each on average", flush=True)
    source = SourceConfig(topic="examples", batch_size=batch_size)
    consumer = MemoryConsumer(source.topic, values)
    continuous.make_consumer = lambda *_: consumer
    continuous.ensure_topics = lambda *_: []
    work = Path(tempfile.mkdtemp(prefix="recoil-learner-profile-"))
    config = LearnerConfig(
        store=work / "store", checkpoint_dir=work / "ckpt", model_updates_topic=None,
        stop_when_idle_s=1.0, precision=precision, softmax=softmax,
    )  # fmt: skip
    if model:  # the live default model otherwise, as recoil learn
        config = replace(config, model=replace(config.model, **model))
    trained = trained_by_arm([r.value for r in values], config.arm)
    print(
        f"{trained:,} of them have a label the arm ({config.arm}) trains; the rest are read, "
        f"counted and not trained ({'from their label header' if label_header else 'decoded'})",
        flush=True,
    )
    metrics = _Timed(LearnerMetrics(CollectorRegistry()))
    phases = _time_phases()
    profiler = cProfile.Profile()
    if cprofile:
        profiler.enable()
    run_learner(KafkaSettings("unused:9092"), config, source, metrics, threading.Event())  # type: ignore[arg-type]
    profiler.disable()
    assert consumer.first_at is not None
    # waiting for more examples before the last batch is not the learner's work
    waited = consumer.slept_before(metrics.last_at)
    seconds = metrics.last_at - consumer.first_at - waited
    stats = pstats.Stats(profiler) if cprofile else None
    return {
        "examples": metrics.counted,
        "seconds": seconds,
        "waited": waited,
        "examples_per_second": metrics.counted / seconds,
        "trained": trained,
        "bytes_per_example": size,
        "batch_size": batch_size,
        "phases": phases,
        "stats": stats,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--top", type=int, default=0, help="also print the top N functions")
    parser.add_argument(
        "--reference-decoder", action="store_true", help="decode with decode_example (before)"
    )
    parser.add_argument(
        "--without-label-header",
        action="store_true",
        help="records without the label header, as another producer might write them: "
        "every record is decoded whole",
    )
    add_learner_arguments(parser)
    args = parser.parse_args()
    result = profile(
        args.examples, args.batch_size, args.threads, args.reference_decoder, bool(args.top),
        label_header=not args.without_label_header, precision=args.precision,
        softmax=args.softmax, model=model_overrides(args),
    )  # fmt: skip
    print(
        f"learner: {result['examples']:,} examples in {result['seconds']:.1f}s = "
        f"{result['examples_per_second']:,.0f} examples/s (batch {args.batch_size}, "
        f"{args.threads} thread(s){', under cProfile' if args.top else ''}; "
        f"not counted: {result['waited']:.1f}s waiting for more before the last batch)"
    )
    for label, seconds in result["phases"].items():
        print(f"  {label:42s} {seconds:7.2f}s  {seconds / result['seconds']:6.1%}")
    per_row = result["phases"]["training step"] / max(1, result["trained"])
    print(f"  the training step per trained example: {per_row * 1e6:,.0f} us")
    if result["stats"] is not None:
        result["stats"].sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
