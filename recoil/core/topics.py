"""Topic names and an idempotent creator for them (kafka-python admin client)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import Any

from recoil.core.errors import BrokerUnreachableError
from recoil.core.kafka_settings import KafkaSettings

INTERACTIONS = "interactions"
DLQ = "interactions.dlq"
TRAINING_EXAMPLES = "training-examples"
MODEL_UPDATES = "model-updates"

# Kafka's rule for a topic name: 1-249 of these characters, and neither "." nor "..".
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")


# Partitions of a topic a command creates: Kafka's KRaft controller takes at most 10,000
# partition records in one request, and a command creates up to four topics of the same
# count at once (the worker: input, output, dead letters, then Faust's changelog).
MAX_PARTITIONS = 2500
# Kafka's replication factor is a 16-bit number in the protocol (a larger one was a
# struct.error traceback); a factor above the cluster's broker count fails anyway.
MAX_REPLICATION_FACTOR = 2**15 - 1


def topic_name_problem(name: str) -> str | None:
    """What is wrong with ``name`` as a Kafka topic name (None: nothing), for a message."""
    if not name:
        return "must not be empty"
    if not _TOPIC_NAME.fullmatch(name) or name in (".", ".."):
        return "use 1-249 characters from letters, digits, '.', '_', '-' (not '.' or '..')"
    return None


def unreachable_broker(settings: KafkaSettings, detail: object) -> BrokerUnreachableError:
    """The error of a command whose Kafka client could not bootstrap (kafka-python's or
    aiokafka's): which servers, and what to check."""
    return BrokerUnreachableError(
        f"cannot reach a Kafka broker at {settings.bootstrap_servers} (--bootstrap-servers): "
        f"{detail}. Is one running there (`recoil broker` starts one), and is the address right?"
    )


def admin_client(settings: KafkaSettings) -> Any:
    """A kafka-python admin client of the cluster; :class:`BrokerUnreachableError` naming the
    bootstrap servers when it cannot bootstrap (kafka-python's timeout is a traceback)."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaConnectionError, KafkaTimeoutError

    try:
        return KafkaAdminClient(**settings.kafka_python())
    except (KafkaTimeoutError, KafkaConnectionError) as exc:
        raise unreachable_broker(settings, exc) from None


def ensure_topics(
    settings: KafkaSettings,
    names: Iterable[str],
    partitions: int = 4,
    replication_factor: int = 1,
    configs: dict[str, str] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet; return the names created.

    A cluster that cannot be reached (kafka-python gives up bootstrapping after its
    timeout) raises :class:`BrokerUnreachableError` (a ConfigError) naming the bootstrap servers.
    """
    from kafka.admin import NewTopic

    admin = admin_client(settings)
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


def topic_bytes(settings: KafkaSettings, topic: str) -> int:
    """The bytes ``topic``'s partitions take in the brokers' log directories: its record
    batches as stored, compressed or not, over every replica."""
    admin = admin_client(settings)
    try:
        brokers = admin.describe_log_dirs([topic])
    finally:
        admin.close()
    return sum(
        partition["partition_size"]
        for broker in brokers
        for log_dir in broker["log_dirs"]
        for stored in log_dir["topics"]
        if stored["name"] == topic
        for partition in stored["partitions"]
    )
