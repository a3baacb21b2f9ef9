"""The worker's topics: create what is missing, check what exists, before Faust starts.

The input topic decides the partition count: the history table's changelog
must have exactly as many partitions (partition p of the changelog holds the
state of the users of input partition p). Topics are created up front, not
left to the broker's auto-creation, which would give them one partition.
"""

from __future__ import annotations

from dataclasses import dataclass

from recoil.core.errors import ConfigError
from recoil.core.kafka_settings import KafkaSettings
from recoil.core.topics import admin_client
from streams.config import StreamsConfig

TABLE_NAME = "history"


def changelog_topic(config: StreamsConfig) -> str:
    """Faust's name for the history table's changelog topic."""
    return f"{config.app_id}-{TABLE_NAME}-changelog"


@dataclass(frozen=True)
class TopicLayout:
    """Partition counts found (or created) for the worker's topics."""

    input_partitions: int
    created: tuple[str, ...]


def prepare_topics(settings: KafkaSettings, config: StreamsConfig) -> TopicLayout:
    """Create missing input/output/DLQ topics; check the changelog matches the input.

    A cluster that cannot be reached raises :class:`BrokerUnreachableError` naming the
    bootstrap servers (kafka-python's timeout was a traceback, in the worker and its
    benchmark)."""
    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics())
        wanted = {config.input_topic: config.partitions}
        if config.input_topic in existing:
            wanted[config.input_topic] = _partition_count(admin, config.input_topic)
        partitions = wanted[config.input_topic]
        missing = [
            name
            for name in (config.input_topic, config.output_topic, config.dlq_topic)
            if name not in existing
        ]
        if missing:
            # Two workers may start together: the loser's "already exists" is fine.
            admin.create_topics(
                {
                    name: {
                        "num_partitions": partitions,
                        "replication_factor": config.replication_factor,
                    }
                    for name in missing
                },
                raise_errors=False,
                wait_for_metadata=True,
            )
        changelog = changelog_topic(config)
        if changelog in existing:
            found = _partition_count(admin, changelog)
            if found != partitions:
                raise ConfigError(
                    f"changelog topic {changelog!r} has {found} partitions but input topic "
                    f"{config.input_topic!r} has {partitions}: the table would put users on the "
                    "wrong workers. Use a new --app-id (or delete the changelog topic)."
                )
        return TopicLayout(partitions, tuple(missing))
    finally:
        admin.close()


def _partition_count(admin: object, topic: str) -> int:
    described = admin.describe_topics([topic])  # type: ignore[attr-defined]
    for item in described:
        if item["name"] == topic:
            count = len(item["partitions"])
            if count < 1:
                raise ConfigError(f"topic {topic!r} has no partitions (error {item})")
            return count
    raise ConfigError(f"topic {topic!r} could not be described")
