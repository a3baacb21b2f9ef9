"""Offset continuity: jumps are checked with the broker, lost records held back and re-read;
a partition whose next record waits on the broker without moving is reported stalled."""

from __future__ import annotations

import asyncio

from streams.continuity import OffsetContinuity, StallWatch


class Log:
    """A partition's readable offsets (what the broker would say), and the questions asked."""

    def __init__(self, readable: dict[int, list[int]]) -> None:
        self.readable = readable
        self.asked: list[tuple[int, int]] = []

    async def first_from(self, partition: int, offset: int) -> int | None:
        self.asked.append((partition, offset))
        return next((o for o in self.readable[partition] if o >= offset), None)


def admit_all(continuity: OffsetContinuity, offsets: list[tuple[int, int]]) -> list[str]:
    async def run() -> list[str]:
        out: list[str] = []
        for partition, offset in offsets:
            admission = await continuity.admit(partition, offset)
            if admission in ("process", "gap"):
                continuity.processed(partition, offset)
            out.append(admission)
        return out

    return asyncio.run(run())


def test_contiguous_offsets_are_processed_without_asking() -> None:
    log = Log({0: list(range(10))})
    continuity = OffsetContinuity(log.first_from)
    continuity.reset({0: 3})
    assert admit_all(continuity, [(0, 3), (0, 4), (0, 5)]) == ["process"] * 3
    assert log.asked == []


def test_a_jump_over_markers_is_fine() -> None:
    log = Log({0: [0, 1, 2, 5, 6]})  # 3 and 4: a transaction's commit marker, an abort
    continuity = OffsetContinuity(log.first_from)
    continuity.reset({0: 0})
    got = admit_all(continuity, [(0, 0), (0, 1), (0, 2), (0, 5), (0, 6)])
    assert got == ["process", "process", "process", "gap", "process"]
    assert continuity.last_gap == range(3, 5)  # confirmed empty: commit through them
    assert log.asked == [(0, 3)]


def test_a_lost_record_holds_the_partition_until_it_is_read_again() -> None:
    log = Log({0: list(range(10)), 1: list(range(10))})
    continuity = OffsetContinuity(log.first_from, clock=lambda: 100.0)
    continuity.reset({0: 0, 1: 0})
    got = admit_all(continuity, [(0, 0), (0, 1), (0, 3), (1, 0), (0, 4), (0, 5)])
    assert got == ["process", "process", "held", "process", "held", "held"]
    assert {p: r.offset for p, r in continuity.rereads.items()} == {0: 2}
    assert continuity.cause(0) == "jump"
    # The re-read delivers 0..5 again: old ones are repeats, 2 is processed, then on.
    got = admit_all(continuity, [(0, 0), (0, 1), (0, 2), (0, 3), (0, 4)])
    assert got == ["repeat", "repeat", "process", "process", "process"]
    assert continuity.rereads == {}
    assert log.asked == [(0, 2)]  # asked once; held events were not asked about again


def test_unknown_start_accepts_the_first_offset() -> None:
    continuity = OffsetContinuity(Log({0: []}).first_from)
    continuity.reset({0: None})
    assert admit_all(continuity, [(0, 42), (0, 43)]) == ["process", "process"]


def test_overdue_rereads_are_reported_once_per_timeout() -> None:
    now = [0.0]
    log = Log({0: list(range(5))})
    continuity = OffsetContinuity(log.first_from, clock=lambda: now[0])
    continuity.reset({0: 0})
    admit_all(continuity, [(0, 2)])
    assert continuity.overdue(5.0) == {}
    now[0] = 6.0
    assert continuity.overdue(5.0) == {0: 0}
    assert continuity.overdue(5.0) == {}


def test_a_stalled_record_is_re_read_and_then_processed() -> None:
    # Records 5.. were fetched and dropped with nothing after them: no jump reveals them.
    continuity = OffsetContinuity(Log({0: list(range(8))}).first_from, clock=lambda: 1.0)
    continuity.reset({0: 0})
    admit_all(continuity, [(0, o) for o in range(5)])
    continuity.stalled(0, 5)
    assert continuity.to_seek() == {0: 5}
    assert continuity.cause(0) == "stall"
    continuity.stalled(0, 6)  # a re-read under way is not replaced
    assert {p: r.offset for p, r in continuity.rereads.items()} == {0: 5}
    assert admit_all(continuity, [(0, 4), (0, 5), (0, 6)]) == ["repeat", "process", "process"]


def test_a_need_below_the_end_is_stalled_only_once_it_stops_moving() -> None:
    now = [0.0]
    watch = StallWatch(grace=10.0, clock=lambda: now[0])
    assert watch.check({0: 5, 1: 7}, {0: 8, 1: 7}) == {}  # 1 is caught up
    now[0] = 9.0
    assert watch.check({0: 5, 1: 7}, {0: 8, 1: 9}) == {}  # 0 waits 9 s; 1 starts waiting
    now[0] = 10.0
    assert watch.check({0: 5, 1: 7}, {0: 8, 1: 9}) == {0: 5}
    now[0] = 15.0
    assert watch.check({0: 6, 1: 7}, {0: 8, 1: 9}) == {}  # 0 moved: its wait starts again
    now[0] = 19.0
    assert watch.check({0: 6, 1: 7}, {0: 8, 1: 9}) == {1: 7}
    now[0] = 24.0
    assert watch.check({0: 6, 1: 7}, {0: 8, 1: 9}) == {}  # reported again only after grace
    now[0] = 25.0
    assert watch.check({0: 6, 1: 7}, {0: 8, 1: 9}) == {0: 6}
    assert watch.check({0: 8, 1: 9}, {0: 8, 1: 9}) == {}  # caught up: nothing waits
    assert watch.waiting == {}


def test_an_unreadable_tail_is_not_a_stall_until_the_log_moves() -> None:
    now = [0.0]
    watch = StallWatch(grace=1.0, clock=lambda: now[0])
    watch.check({0: 3}, {0: 4})
    now[0] = 2.0
    assert watch.check({0: 3}, {0: 4}) == {0: 3}
    watch.nothing_readable(0, 3, 4)  # offset 3 is a commit marker
    now[0] = 9.0
    assert watch.check({0: 3}, {0: 4}) == {}
    assert watch.check({0: 3}, {0: 6}) == {}  # new records: the wait starts again
    assert watch.unreadable == {}  # and the old tail is forgotten
    now[0] = 11.0
    assert watch.check({0: 3}, {0: 6}) == {0: 3}
    watch.reset()
    assert watch.check({0: 3}, {0: 6}) == {}
