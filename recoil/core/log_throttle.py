"""How often a warning that repeats per record is logged."""

from __future__ import annotations


def worth_logging(count: int) -> bool:
    """Whether the ``count``-th occurrence (from 1) is logged: the first 20, then every
    1,000th, so a stream of bad records shows in the log without flooding it."""
    return count <= 20 or count % 1000 == 0
