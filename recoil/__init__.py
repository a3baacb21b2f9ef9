"""recoil: a near-real-time sequential recommender that learns from negative feedback.

This shared package holds what every part may import: the interaction event
schema, the record types that cross Kafka topics, Kafka connection settings,
the embedded broker used by tests and the demo, and the ``recoil`` command.
"""

__version__ = "0.1.0"
