"""The crash-loop rule: no single input record may stop the pipeline.

Crash-only recovery (:mod:`streams.supervisor`) restarts the worker from its
committed offsets. A record that kills the worker every time it is processed
-- a dead letter the broker refuses, a bug, memory exhaustion -- would make
that a loop: read, die, restart, read again. So the worker keeps a *note* in
its data directory (``IN_FLIGHT.json``) saying where it is:

- before each batch, the offset range of each partition in the batch;
- before each record it handles with care (below), that record;
- when it exits because a send or the processing of a record failed, that record.

A graceful stop deletes the note. A start that finds one knows the previous
process died there, once more than the note says (``deaths``), and treats
the records the note covers (:func:`decide`):

=======================  =========================================================
note found               the next time the worker reaches those records
=======================  =========================================================
a batch (range), died 1+  ``careful``: one at a time, each noted before it is
                          handled and its sends awaited, so a second death names
                          the record
a record, died once       ``careful``; an invalid record gets a *minimal* dead
                          letter (no value), an exception or refused send a
                          minimal dead letter at once
a record, died twice      ``minimal``: not processed; a minimal dead letter
                          (key, source, size, SHA-256, reason ``crash_loop``)
a record, died 3+ times   ``skip``: logged, counted in
                          ``recoil_stream_skipped_records_total``, committed past
=======================  =========================================================

So a record whose full dead letter cannot be written costs one restart, and
one that kills the worker however it is handled at most three; the worker
never stops at a single record. A death that is not about a record (a broker
outage at commit time) leaves batch notes only, which never escalate past
``careful``: the supervisor's restart limit still reports such a fault.

The note also carries two counters that survive restarts, so their metrics
never go back to zero while the data directory lives: starts at a noted record
(``same_offset_restarts``) and skipped records.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

NOTE_FILE = "IN_FLIGHT.json"
MAX_NOTE_REASON_CHARS = 300

Decision = Literal["process", "careful", "minimal", "skip"]


@dataclass(frozen=True)
class Spot:
    """Input offsets ``first..last`` of one partition the worker was at."""

    topic: str
    partition: int
    first: int
    last: int
    deaths: int = 0  # times the worker already died with this spot noted
    reason: str = ""  # what failed there, for the minimal dead letter's reason

    @property
    def precise(self) -> bool:
        """One record, not a batch."""
        return self.first == self.last

    def covers(self, topic: str, partition: int, offset: int) -> bool:
        return (topic, partition) == (self.topic, self.partition) and (
            self.first <= offset <= self.last
        )


@dataclass
class Counts:
    same_offset_restarts: int = 0
    skipped_records: int = 0


def decide(spot: Spot | None) -> Decision:
    """What to do with a record the worker died at ``spot.deaths`` times (module docstring)."""
    if spot is None or spot.deaths == 0:
        return "process"
    if not spot.precise or spot.deaths == 1:
        return "careful"
    if spot.deaths == 2:
        return "minimal"
    return "skip"


def find(spots: list[Spot], topic: str, partition: int, offset: int) -> Spot | None:
    """The spot noted for a record: a record's own beats a batch's; None if not noted."""
    covering = [s for s in spots if s.covers(topic, partition, offset)]
    if not covering:
        return None
    return max(covering, key=lambda s: (s.precise, s.deaths))


@dataclass
class CrashNotes:
    """The note file of one worker's data directory (module docstring)."""

    path: Path
    found: list[Spot] = field(default_factory=list)  # the dead process's spots, deaths + 1
    counts: Counts = field(default_factory=Counts)
    batch: list[Spot] = field(default_factory=list)
    reached: set[tuple[str, int, int, int]] = field(default_factory=set)

    @classmethod
    def load(cls, data_dir: Path) -> CrashNotes:
        """Read the note a dead process left (unreadable: treated as none, logged)."""
        path = data_dir / NOTE_FILE
        notes = cls(path)
        try:
            raw = json.loads(path.read_text())
            notes.found = [replace(Spot(**s), deaths=int(s.get("deaths", 0)) + 1)
                           for s in raw.get("spots", [])]  # fmt: skip
            notes.counts = Counts(**raw.get("counts", {}))
        except FileNotFoundError:
            pass
        except (ValueError, TypeError, AttributeError) as exc:
            log.error("ignoring unreadable crash note %s: %r", path, exc)
        if notes.found:
            log.warning("the previous worker died at %s", ", ".join(map(_describe, notes.found)))
        return notes

    def lookup(self, topic: str, partition: int, offset: int) -> Spot | None:
        return find(self.found, topic, partition, offset)

    def reached_again(self, spot: Spot) -> bool:
        """Count a start at a noted spot once per spot; True the first time."""
        ident = (spot.topic, spot.partition, spot.first, spot.last)
        if ident in self.reached:
            return False
        self.reached.add(ident)
        self.counts.same_offset_restarts += 1
        return True

    def note_batch(self, ranges: Mapping[tuple[str, int], tuple[int, int]]) -> None:
        """Before a batch: its offset range per partition (deaths carried over)."""
        self.batch = []
        for (topic, partition), (first, last) in ranges.items():
            deaths = max((s.deaths for s in self.found if not s.precise and s.topic == topic
                          and s.partition == partition and s.first <= last
                          and first <= s.last), default=0)  # fmt: skip
            self.batch.append(Spot(topic, partition, first, last, deaths))
        self._write(self.batch)

    def note_record(self, topic: str, partition: int, offset: int, reason: str = "") -> None:
        """Before a careful record, or on the way out after it failed."""
        noted = self.lookup(topic, partition, offset)
        deaths = noted.deaths if noted is not None else 0
        spot = Spot(topic, partition, offset, offset, deaths, reason[:MAX_NOTE_REASON_CHARS])
        self._write([*self.batch, spot])

    def note_batch_again(self) -> None:
        """A careful record is done: back to the batch's note."""
        self._write(self.batch)

    def skipped(self) -> None:
        self.counts.skipped_records += 1
        self._write(self.batch)

    def clear(self) -> None:
        """After a graceful stop: nothing in flight; keep only the counters."""
        self.batch = []
        self._write([])

    def _write(self, spots: list[Spot]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"spots": [asdict(s) for s in spots],
                                   "counts": asdict(self.counts)}))  # fmt: skip
        os.replace(tmp, self.path)  # never half a note, even if we die right now


def _describe(spot: Spot) -> str:
    where = spot.first if spot.precise else f"{spot.first}..{spot.last}"
    return f"{spot.topic}/{spot.partition}@{where} ({spot.deaths} time(s))"
