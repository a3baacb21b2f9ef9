"""An embedded Apache Kafka broker (KRaft, single combined node) for tests and the demo."""

from recoil.broker.embedded import EmbeddedKafka
from recoil.broker.jars import kafka_classpath

__all__ = ["EmbeddedKafka", "kafka_classpath"]
