"""The one error a wrong setting raises, whatever part reads it."""

from __future__ import annotations


class ConfigError(ValueError):
    """A setting is wrong; the message names it and says what to fix."""


class BrokerUnreachableError(ConfigError):
    """No Kafka broker answered at the bootstrap servers. A one-shot command stops on it
    as on any wrong setting; the stream worker exits to be restarted (a broker that
    comes up after its consumers is no wrong setting)."""
