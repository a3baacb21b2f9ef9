"""Topic names and an idempotent creator for them (kafka-python admin client)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from recoil.core.kafka_settings import KafkaSettings

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
            _wait_for_metadata(admin, wanted, partitions)
        return wanted
    finally:
        admin.close()


def _wait_for_metadata(
    admin: Any, names: list[str], partitions: int, timeout: float = 15.0
) -> None:
    """Return once every new topic shows all its partitions with a leader.

    Creation returns before metadata has spread; a consumer group that joins in
    between can be assigned nothing for the topic (seen with kafka-python's
    range assignor), so callers get topics that are really there.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        described = admin.describe_topics(names)
        ready = [
            t for t in described
            if not t.get("error_code") and len(t.get("partitions") or []) == partitions
            and all(p.get("leader_id", -1) >= 0 for p in t["partitions"])
        ]  # fmt: skip
        if len(ready) == len(names):
            return
        time.sleep(0.1)
    raise TimeoutError(f"topics {names} have no complete metadata after {timeout}s")
