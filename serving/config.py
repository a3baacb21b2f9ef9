"""``recoil serve``'s own settings (how it batches is ``serving.batching.BatchConfig``).

Light to import: the command line is built from it before serving's heavy imports.
Every number is checked finite and in range when the server starts: argparse's
``float`` takes ``nan`` and ``inf``, and ``asyncio.sleep(nan)`` returns at once, so an
unchecked ``--poll-seconds nan`` spun a core polling the store.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from recoil.core.settings import setting


@dataclass(frozen=True)
class ServeConfig:
    """How often serving looks for snapshots, and how long a client may take to send a body."""

    poll_seconds: float = setting(0.5, "how often (seconds) to look for a new snapshot")
    # A client that sends part of a body and stops would otherwise hold its request (and a
    # connection) forever: aiohttp bounds no body read. 5 s sends the largest body (8 MiB)
    # at 1.7 MB/s, far below any link between a client and serving in one cluster.
    body_timeout_s: float = setting(
        5.0, "seconds a client has to send a POST body in full; a slower one gets a 408"
    )

    def __post_init__(self) -> None:
        # Below 10 ms the watcher would poll the store back to back; over an hour a new
        # snapshot would wait longer than the learner takes to publish several.
        _check_range("poll_seconds", self.poll_seconds, 0.01, 3600.0)
        _check_range("body_timeout_s", self.body_timeout_s, 0.1, 600.0)


def _check_range(name: str, value: float, low: float, high: float) -> None:
    """``value`` must be a finite number in [low, high] (NaN fails every comparison, so it
    is named rather than let through by a ``<=`` test)."""
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(f"{name} must be a finite number in [{low:g}, {high:g}], got {value}")
