"""Topic names and an idempotent creator for them (kafka-python admin client)."""

from __future__ import annotations

from collections.abc import Iterable

from recoil.kafka_settings import KafkaSettings

INTERACTIONS = "interactions"
DLQ = "interactions.dlq"
TRAINING_EXAMPLES = "training-examples"
MODEL_UPDATES = "model-updates"


def ensure_topics(
    settings: KafkaSettings,
    names: Iterable[str],
    partitions: int = 4,
    replication_factor: int = 1,
    configs: dict[str, str] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(**settings.kafka_python())
    try:
        existing = set(admin.list_topics())
        wanted = [n for n in dict.fromkeys(names) if n not in existing]
        if wanted:
            admin.create_topics(
                [
                    NewTopic(n, partitions, replication_factor, topic_configs=configs or {})
                    for n in wanted
                ]
            )
        return wanted
    finally:
        admin.close()
