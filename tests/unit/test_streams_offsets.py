"""The strict commit rule (faust #596/#606): exact offsets for each situation."""

from __future__ import annotations

from streams.offsets import CommitDecision, committable_offset


def test_contiguous_acks_commit_to_the_next_offset() -> None:
    assert committable_offset(10, [10, 11, 12]) == CommitDecision(13)


def test_nothing_acked_commits_nothing() -> None:
    assert committable_offset(10, []) == CommitDecision(None)


def test_first_commit_starts_at_the_first_acked_offset() -> None:
    assert committable_offset(None, [5, 6, 8]) == CommitDecision(7)


def test_stops_at_a_hole_and_reports_it_once_nothing_else_moves() -> None:
    assert committable_offset(10, [10, 11, 13, 14]) == CommitDecision(12)
    assert committable_offset(12, [13, 14]) == CommitDecision(None, hole=12)


def test_issue_606_never_commits_past_an_event_in_flight() -> None:
    # Faust returns 2590 here ("min(acked) - committed == 1" passes as a gap) and a
    # restart never processes 2585. The strict rule waits for it.
    assert committable_offset(2585, [2586, 2587, 2588, 2589], in_flight=[2585]) == (
        CommitDecision(None)
    )
    # ... and once 2585 is acked, commits everything.
    assert committable_offset(2585, [2585, 2586, 2587, 2588, 2589]) == CommitDecision(2590)


def test_in_flight_caps_progress_beyond_acked_offsets() -> None:
    assert committable_offset(10, [10, 11, 12, 14], in_flight=[13]) == CommitDecision(13)


def test_issue_596_a_dropped_offset_is_a_hole_not_a_gap() -> None:
    # 11 was fetched and dropped: nothing is in flight, later offsets are acked.
    assert committable_offset(11, [12, 13, 14]) == CommitDecision(None, hole=11)


def test_known_absent_offsets_are_committed_through() -> None:
    absent = {11, 15}
    decision = committable_offset(10, [10, 12, 13, 14, 16], is_absent=absent.__contains__)
    assert decision == CommitDecision(17)


def test_acked_offsets_below_the_commit_are_ignored() -> None:
    # Re-delivered offsets acked again after a re-read do not move anything back.
    assert committable_offset(20, [12, 13]) == CommitDecision(None)


def test_read_offsets_never_pass_what_the_agent_needs() -> None:
    from faust.types import TP

    from streams.consumer import ReadOffsets

    tp = TP("t", 0)
    needed: dict[TP, int] = {}
    offsets = ReadOffsets(needed)
    assert offsets[tp] is None  # nothing read yet: Faust delivers anything
    offsets[tp] = 90  # stale records fetched before a seek back moved it up
    assert offsets[tp] == 90
    needed[tp] = 5  # the agent re-reads from 5
    assert offsets[tp] == 5  # so Faust keeps delivering 5, 6, ... instead of dropping them
