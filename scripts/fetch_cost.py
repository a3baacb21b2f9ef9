"""CPU per record of the two Kafka clients reading training examples as workers write them.

    python scripts/fetch_cost.py N [--rounds 2]

Starts its own embedded broker, produces ``bench.learner_profile``'s N examples (the
medium world, ~2 KB each with the label header) into a 4-partition topic in batches of
16 KB with no linger (~8 records a batch: the order of what a worker's 5-ms linger
gives, estimated in docs/streams.md, not measured),
then reads all N under ``read_committed`` in a fresh group, once with kafka-python
(what the learner used) and once with confluent-kafka (librdkafka, what it uses), in
turns. Prints wall seconds and the process's CPU seconds (every thread: the clients'
I/O threads count) per record. Used for docs/streams.md ("The learner's consumer").
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Callable

from bench.learner_profile import produce_worker_examples, worker_examples
from recoil.broker.embedded import EmbeddedKafka
from recoil.core.kafka_settings import KafkaSettings
from recoil.core.topics import ensure_topics

TOPIC = "examples"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def kafka_python(settings: KafkaSettings, count: int, group: str) -> int:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        TOPIC, **settings.kafka_python(), group_id=group, auto_offset_reset="earliest",
        enable_auto_commit=False, isolation_level="read_committed", max_poll_records=2048,
    )  # fmt: skip
    read = 0
    while read < count:
        for records in consumer.poll(timeout_ms=500).values():
            read += sum(1 for r in records if r.value is not None)
    consumer.close()
    return read


def librdkafka(settings: KafkaSettings, count: int, group: str) -> int:
    from confluent_kafka import Consumer

    consumer = Consumer(
        {**settings.librdkafka(), "group.id": group, "auto.offset.reset": "earliest",
         "enable.auto.commit": False, "isolation.level": "read_committed"}
    )  # fmt: skip
    consumer.subscribe([TOPIC])
    read = 0
    while read < count:
        read += sum(1 for m in consumer.consume(2048, 0.5) if m.error() is None and m.value())
    consumer.close()
    return read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("count", type=int)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    values = worker_examples(args.count)
    with EmbeddedKafka() as kafka:
        settings = KafkaSettings(kafka.bootstrap_servers)
        ensure_topics(settings, [TOPIC], partitions=4)
        produce_worker_examples(settings, TOPIC, values, linger_ms=0, batch_size=16384)
        readers: dict[str, Callable[[KafkaSettings, int, str], int]] = {
            "kafka-python": kafka_python, "confluent-kafka": librdkafka,
        }  # fmt: skip
        for round_ in range(args.rounds):
            for name, read in readers.items():
                started, cpu = time.monotonic(), _cpu()
                got = read(settings, args.count, f"fetch-cost-{name}-{round_}")
                wall, cpu = time.monotonic() - started, _cpu() - cpu
                print(f"{name}: {got:,} records, wall {wall:.2f} s, CPU {cpu:.2f} s, "
                      f"{cpu / got * 1e6:.1f} us a record", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
