"""Session fixtures: the real Kafka broker, per-test topics, and a Prometheus factory.

Integration tests never skip for a missing service: if the broker or
Prometheus cannot start, the fixture raises and the test fails with the
service's log.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

from recoil.broker import EmbeddedKafka
from recoil.core.kafka_settings import KafkaSettings
from recoil.core.topics import ensure_topics
from tests.support.prometheus import PrometheusServer


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[EmbeddedKafka]:
    """One real Apache Kafka broker for the whole test session."""
    broker = EmbeddedKafka()
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def kafka(kafka_broker: EmbeddedKafka, request: pytest.FixtureRequest) -> Iterator[KafkaSettings]:
    """Kafka settings for one test; prints the broker's log if the test fails."""
    yield KafkaSettings(bootstrap_servers=kafka_broker.bootstrap_servers)
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(f"\n--- Kafka broker log ({kafka_broker.log_file}) ---\n{kafka_broker.log_tail()}")


@pytest.fixture
def topic_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Unique topic names for this test, so tests never see each other's records."""
    tag = uuid.uuid4().hex[:8]
    test = request.node.name.replace("[", "-").replace("]", "").replace("/", "-")[:40]

    def make(base: str) -> str:
        return f"{base}.{test}.{tag}"

    return make


@pytest.fixture
def examples_topic(
    kafka: KafkaSettings, topic_name: Callable[[str], str], request: pytest.FixtureRequest
) -> str:
    """A fresh training-examples topic for this test, with as many partitions as its module's
    ``PARTITIONS`` says."""
    name = topic_name("examples")
    ensure_topics(kafka, [name], partitions=request.module.PARTITIONS)
    return name


@pytest.fixture
def prometheus_factory() -> Iterator[Callable[..., PrometheusServer]]:
    """Start real Prometheus servers with a config the test writes; stop them after."""
    servers: list[PrometheusServer] = []

    def start(config_yaml: str, rule_files: list[Path] | None = None) -> PrometheusServer:
        server = PrometheusServer(config_yaml, rule_files)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item so fixtures can tell a failed test."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
