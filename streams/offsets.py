"""Which input offset is safe to commit: the pure rule behind recoil's consumer.

Faust commits the end of the first run of consecutive acked offsets. Two open
faust-streaming bugs make that unsafe for a changelogged table:

* #606 -- a missing offset right at the committed position is taken for a
  compaction/transaction gap (``min(acked) - committed > 1`` lets exactly one
  through), so Faust commits past an event that is still being processed, or
  that was dropped, and a restart never processes it.
* #596 -- after a recovery race an event is fetched but never delivered to the
  agent; its offset is never acked, every later offset is, and Faust never
  commits that partition again (and, in exactly-once mode, never ends its
  transaction, so read_committed readers see nothing more from it).

The rule here is strict: commit through offsets that were acked or are known
to hold no deliverable record (gaps Faust saw between consecutive fetched
offsets, or offsets the broker confirmed empty), never past an offset that is
in flight, and never past an unexplained hole. A hole is reported instead, so
the caller can ask the broker what is there (see :mod:`streams.consumer`): an
empty offset (a transaction marker, a compacted record) is then committed
through; a real record means it was dropped, and the partition is re-read from
the hole -- harmless, because the per-user dedupe turns the re-read events
into duplicates.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CommitDecision:
    """``offset``: commit this (the next offset to read), or None for no progress.

    ``hole``: the first offset that blocks progress although later offsets were
    acked and it is not in flight -- to be checked against the broker.
    """

    offset: int | None
    hole: int | None = None


def committable_offset(
    committed: int | None,
    acked: Collection[int],
    in_flight: Collection[int] = (),
    is_absent: Callable[[int], bool] = lambda offset: False,
) -> CommitDecision:
    """The next offset to commit for one partition, or None with the hole that blocks it.

    ``committed`` is the next offset to read as last committed (None when the
    group has no commit yet: start at the first acked offset). ``in_flight``
    holds offsets delivered but not yet acked; ``is_absent(o)`` says offset
    ``o`` holds no record this consumer will ever see.
    """
    if not acked:
        return CommitDecision(None)
    acked_set = acked if isinstance(acked, set | frozenset) else set(acked)
    newest = max(acked_set)
    start = min(acked_set) if committed is None else committed
    stop = min(in_flight) if in_flight else None
    offset = start
    while offset <= newest and (stop is None or offset < stop):
        if offset in acked_set or is_absent(offset):
            offset += 1
            continue
        break
    if offset > start:
        return CommitDecision(offset)
    # No progress. A hole is an offset below acked ones that is not in flight.
    blocked_by_in_flight = stop is not None and offset >= stop
    if offset <= newest and not blocked_by_in_flight:
        return CommitDecision(None, hole=offset)
    return CommitDecision(None)
