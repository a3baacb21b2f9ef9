"""Offset continuity per input partition: never process an event past a lost one.

Faust can fetch a record and never deliver it to the agent (faust #596: a race
around recovery and rebalances; it shows up in this project's tests). The
commit rule in :mod:`streams.offsets` keeps such a hole from being committed
over, but by then the agent has processed the events after it -- and a late
re-read of the lost event is older than its user's history and would be
dropped as out of order.

So the agent checks, before processing, that each partition's offsets follow
on from the last one it processed (or, after a rebalance, from the committed
offset Faust seeks to). A jump is asked about once (``probe``: the first offset
readable at or after the expected one): nothing readable in between (a
transaction marker, an aborted or compacted record) is fine; a real record
means it was lost, and the partition is re-read from it. Until it comes back,
later events of that partition are held back (not processed, not acked).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from monitoring.catalogue import LostCause

Admission = Literal["process", "repeat", "held", "gap"]


@dataclass
class Reread:
    """A partition being re-read from ``offset`` (the lost record), since ``since``."""

    offset: int
    since: float
    sought: bool = False  # the seek back has been issued
    cause: LostCause = "jump"  # how the loss showed (a metric label)


class OffsetContinuity:
    """The next offset expected per partition, and what to do with each message."""

    def __init__(
        self,
        probe: Callable[[int, int], Awaitable[int | None]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.probe = probe  # (partition, offset) -> first readable offset >= offset, or None
        self.clock = clock
        self.expected: dict[int, int] = {}
        self.rereads: dict[int, Reread] = {}
        self.last_gap = range(0)  # the empty offsets behind the last "gap" admission

    def reset(self, committed: Mapping[int, int | None]) -> None:
        """After a rebalance: Faust re-reads every partition from its committed offset."""
        self.expected = {p: o for p, o in committed.items() if o is not None}
        self.rereads.clear()

    async def admit(self, partition: int, offset: int) -> Admission:
        """``process`` it, skip a ``repeat`` (processed already), ``held`` (re-reading), or
        ``gap``: process it, the offsets between are confirmed empty (see ``last_gap``)."""
        reread = self.rereads.get(partition)
        if reread is not None:
            if offset == reread.offset:
                del self.rereads[partition]
                return "process"
            return "repeat" if offset < reread.offset else "held"
        expected = self.expected.get(partition)
        if expected is None or offset == expected:
            return "process"
        if offset < expected:
            return "repeat"
        first = await self.probe(partition, expected)
        if first is not None and first >= offset:
            self.last_gap = range(expected, offset)
            return "gap"  # nothing readable between: a marker, an aborted record
        lost = expected if first is None else first
        self.rereads[partition] = Reread(lost, self.clock())
        return "held"

    def to_seek(self) -> dict[int, int]:
        """Re-reads whose seek is still to be issued (each is returned once)."""
        due = {p: r.offset for p, r in self.rereads.items() if not r.sought}
        for partition in due:
            self.rereads[partition].sought = True
        return due

    def cause(self, partition: int) -> LostCause:
        """How the lost record ``partition`` is re-read for showed."""
        return self.rereads[partition].cause

    def stalled(self, partition: int, offset: int) -> None:
        """Re-read ``partition`` from ``offset``, a record the agent never got and no
        later record revealed (:class:`StallWatch`); a re-read under way stays."""
        if partition not in self.rereads:
            self.rereads[partition] = Reread(offset, self.clock(), cause="stall")

    def processed(self, partition: int, offset: int) -> None:
        self.expected[partition] = offset + 1

    def overdue(self, timeout: float) -> dict[int, int]:
        """Re-reads waiting longer than ``timeout`` (to seek again); restarts their clocks."""
        now = self.clock()
        late = {p: r.offset for p, r in self.rereads.items() if now - r.since > timeout}
        for partition in late:
            self.rereads[partition].since = now
        return late


class StallWatch:
    """Partitions whose next needed record waits on the broker and never reaches the agent.

    The continuity check above notices a lost record when a later record of its
    partition arrives. When none follows -- the lost records were the
    partition's last, as at a start on a quiet topic -- nothing would: the
    records stay unprocessed and uncommitted until new input happens to come.
    So once a second the worker gives :meth:`check` the next offset it needs per
    partition and the broker's end; a need below the end that has not moved for
    ``grace`` seconds is reported (again every ``grace`` seconds while it lasts).
    """

    def __init__(self, grace: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.grace = grace
        self.clock = clock
        self.waiting: dict[int, tuple[int, float]] = {}  # partition -> (need, since)
        self.unreadable: dict[int, tuple[int, int]] = {}  # partition -> (need, end)

    def check(self, needs: Mapping[int, int], ends: Mapping[int, int]) -> dict[int, int]:
        """Partition -> needed offset, for each partition stalled at it."""
        now = self.clock()
        stalled: dict[int, int] = {}
        waiting: dict[int, tuple[int, float]] = {}
        # An unreadable tail counts only while neither its need nor its end has moved.
        self.unreadable = {
            partition: seen
            for partition, seen in self.unreadable.items()
            if seen == (needs.get(partition), ends.get(partition))
        }
        for partition, need in needs.items():
            end = ends.get(partition)
            if end is None or end <= need or partition in self.unreadable:
                continue  # caught up: nothing (readable) waits
            seen = self.waiting.get(partition)
            if seen is None or seen[0] != need:
                waiting[partition] = (need, now)  # progress (or a first look)
            elif now - seen[1] >= self.grace:
                stalled[partition] = need
                waiting[partition] = (need, now)
            else:
                waiting[partition] = seen
        self.waiting = waiting
        return stalled

    def nothing_readable(self, partition: int, need: int, end: int) -> None:
        """The broker holds nothing readable from ``need`` to ``end`` (a transaction
        marker, aborted records): no stall until either moves."""
        self.unreadable[partition] = (need, end)

    def reset(self) -> None:
        """Forget every wait (a rebalance: needs start again from committed offsets)."""
        self.waiting.clear()
        self.unreadable.clear()
