"""recoil's Faust consumer: strict commits, a batch barrier, and hole repair.

Faust lets an app bring its own transport; :class:`RecoilTransport` is Faust's
aiokafka transport with :class:`RecoilConsumer`, which changes three things:

1. **Strict commits** (faust #606). ``_new_offset`` uses
   :func:`streams.offsets.committable_offset`: never past an offset still in
   flight, never past a hole nobody has explained.
2. **Hole repair** (faust #596). :meth:`RecoilConsumer.repair_holes` asks the
   broker what sits at each hole that has persisted for ``hole_grace`` seconds.
   No record there (a transaction marker, a compacted or aborted record):
   commits go through it. A real record: it was fetched and dropped before
   reaching the agent, so the partition is re-read from the hole; the per-user
   dedupe makes the re-read events ``duplicate`` outcomes, so nothing is
   emitted twice and the dropped event is finally processed.
3. **Batch barrier.** Commits wait for :attr:`RecoilConsumer.barrier`, which the
   agent holds while it queues one batch's sends. In exactly-once mode a Kafka
   transaction therefore always holds all of a batch's output and table
   writes or none of them; without it, a commit could seal a transaction
   holding an event's example but not the table write that marks it seen, and
   a crash right after would emit that example twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from streams.offsets import committable_offset

log = logging.getLogger(__name__)


@dataclass
class Hole:
    """An offset that blocks commits: first seen at ``since`` (monotonic seconds)."""

    offset: int
    since: float


class HoleProbe:
    """Asks the broker which offset holds the first record at or after a given one.

    Uses its own group-less aiokafka consumer with the worker's isolation level,
    so it sees exactly what the worker's consumer would.
    """

    def __init__(self, kafka_kwargs: Mapping[str, Any], isolation_level: str) -> None:
        self._kwargs = dict(kafka_kwargs)
        self._isolation_level = isolation_level
        self._consumer: Any = None

    async def first_offset_from(self, tp: TP, offset: int, timeout: float = 5.0) -> int | None:
        """The offset of the first record the worker could read at or after ``offset``."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        if self._consumer is None:
            self._consumer = AIOKafkaConsumer(
                **self._kwargs,
                group_id=None,
                enable_auto_commit=False,
                isolation_level=self._isolation_level,
            )
            await self._consumer.start()
        ktp = TopicPartition(tp.topic, tp.partition)
        self._consumer.assign([ktp])
        self._consumer.seek(ktp, offset)
        records = await self._consumer.getmany(ktp, timeout_ms=int(timeout * 1000), max_records=1)
        found = records.get(ktp) or []
        return int(found[0].offset) if found else None

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None


class RecoilConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer with strict commits and hole repair (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Settings travel on the app (streams.app.StreamsApp): Faust builds the consumer.
        self.offset_guard: bool = getattr(self.app, "offset_guard", True)
        self.hole_grace: float = getattr(self.app, "hole_grace", 2.0)
        self.barrier = asyncio.Lock()
        self.holes: dict[TP, Hole] = {}
        self.absent: dict[TP, set[int]] = {}
        self.repaired = 0  # partitions re-read from a dropped record (for logs and tests)

    async def _commit_tps(self, tps: Iterable[TP], start_new_transaction: bool) -> bool:
        async with self.barrier:
            return await super()._commit_tps(tps, start_new_transaction)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        for tp in revoked:
            self.holes.pop(tp, None)
            self.absent.pop(tp, None)
        await super().on_partitions_revoked(revoked)

    def _new_offset(self, tp: TP) -> int | None:
        if not self.offset_guard:
            return super()._new_offset(tp)
        acked = self._acked[tp]
        if not acked:
            return None
        in_flight = [m.offset for m in list(self._unacked_messages) if m.tp == tp and not m.acked]
        gaps = self._gap[tp]
        absent = self.absent.get(tp, set())

        def is_absent(offset: int) -> bool:
            return offset in absent or bool(gaps[offset])

        decision = committable_offset(self._committed_offset[tp], acked, in_flight, is_absent)
        if decision.hole is None:
            self.holes.pop(tp, None)
        elif tp not in self.holes or self.holes[tp].offset != decision.hole:
            self.holes[tp] = Hole(decision.hole, time.monotonic())
        if decision.offset is None:
            return None
        new = decision.offset
        kept = [o for o in acked if o >= new]
        acked[:] = kept
        self._acked_index[tp] = set(kept)
        if gaps:
            gaps.chop(0, new)
        if absent:
            self.absent[tp] = {o for o in absent if o >= new}
        return new

    async def repair_holes(self, probe: HoleProbe) -> list[tuple[TP, int, str]]:
        """Resolve holes older than ``hole_grace``; returns (tp, offset, action) per hole."""
        actions: list[tuple[TP, int, str]] = []
        now = time.monotonic()
        for tp, hole in list(self.holes.items()):
            if now - hole.since < self.hole_grace or tp not in self.assignment():
                continue
            first = await probe.first_offset_from(tp, hole.offset)
            if self.holes.get(tp) is not hole:
                continue  # resolved (or moved) while we asked
            if first is None:
                continue  # nothing readable yet (e.g. an open transaction): ask again later
            if first > hole.offset:
                # Nothing this consumer can ever read in [hole, first): commit through it.
                self.absent.setdefault(tp, set()).update(range(hole.offset, first))
                actions.append((tp, hole.offset, "absent"))
                log.info("offsets %s..%s of %s hold no record: committing through", hole.offset,
                         first - 1, tp)  # fmt: skip
            else:
                # A real record was fetched and never delivered (faust #596): re-read it.
                await self.seek_wait({tp: hole.offset})
                self.repaired += 1
                actions.append((tp, hole.offset, "reread"))
                log.warning("%s@%s was dropped before reaching the agent: re-reading from it "
                            "(dedupe absorbs the repeats)", tp, hole.offset)  # fmt: skip
            del self.holes[tp]
        return actions


class RecoilTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport, creating :class:`RecoilConsumer`."""

    Consumer = RecoilConsumer
