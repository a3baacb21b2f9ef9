"""The one error a wrong setting raises, whatever part reads it."""

from __future__ import annotations


class ConfigError(ValueError):
    """A setting is wrong; the message names it and says what to fix."""
