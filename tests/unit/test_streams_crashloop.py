"""The crash-loop rule: a record the worker keeps dying at escalates to a minimal dead
letter, then to a skip; batch notes never escalate past careful handling."""

from __future__ import annotations

from pathlib import Path

from streams.crashloop import NOTE_FILE, CrashNotes, Spot, decide, find


def restart(data_dir: Path) -> CrashNotes:
    """What a process that dies now leaves to the next start."""
    return CrashNotes.load(data_dir)


def test_decisions() -> None:
    assert decide(None) == "process"
    assert decide(Spot("in", 0, 5, 5, deaths=0)) == "process"
    assert decide(Spot("in", 0, 5, 9, deaths=1)) == "careful"
    assert decide(Spot("in", 0, 5, 9, deaths=7)) == "careful"  # a batch: never past careful
    assert decide(Spot("in", 0, 5, 5, deaths=1)) == "careful"
    assert decide(Spot("in", 0, 5, 5, deaths=2)) == "minimal"
    assert decide(Spot("in", 0, 5, 5, deaths=3)) == "skip"


def test_a_record_beats_its_batch() -> None:
    batch, record = Spot("in", 0, 0, 9, deaths=1), Spot("in", 0, 4, 4, deaths=1)
    assert find([batch, record], "in", 0, 4) == record
    assert find([batch, record], "in", 0, 5) == batch
    assert find([batch, record], "in", 1, 4) is None
    assert find([batch, record], "other", 0, 4) is None


def test_a_record_that_kills_the_worker_escalates(tmp_path: Path) -> None:
    notes = restart(tmp_path)
    assert notes.found == []
    notes.note_batch({("in", 0): (0, 9), ("in", 1): (3, 4)})
    notes.note_record("in", 0, 6, "MessageSizeTooLargeError")  # a send for 6 failed: exit
    notes = restart(tmp_path)
    spot = notes.lookup("in", 0, 6)
    assert spot == Spot("in", 0, 6, 6, deaths=1, reason="MessageSizeTooLargeError")
    assert decide(spot) == "careful"
    assert decide(notes.lookup("in", 0, 5)) == "careful"  # the batch died once too
    assert decide(notes.lookup("in", 2, 5)) == "process"
    assert notes.reached_again(spot) and not notes.reached_again(spot)
    # Handled carefully, and it dies again.
    notes.note_batch({("in", 0): (6, 20)})
    notes.note_record("in", 0, 6, "again")
    notes = restart(tmp_path)
    assert decide(notes.lookup("in", 0, 6)) == "minimal"
    assert notes.counts.same_offset_restarts == 1  # kept across the restart
    notes.note_batch({("in", 0): (6, 20)})
    notes.note_record("in", 0, 6, "even the minimal one")
    notes = restart(tmp_path)
    assert decide(notes.lookup("in", 0, 6)) == "skip"
    notes.skipped()
    notes.clear()  # a graceful stop
    notes = restart(tmp_path)
    assert notes.found == [] and notes.counts.skipped_records == 1


def test_a_death_before_the_first_batch_does_not_escalate(tmp_path: Path) -> None:
    CrashNotes.load(tmp_path).note_record("in", 0, 6)
    restart(tmp_path)  # dies during start-up, before any batch: the note is untouched
    assert restart(tmp_path).lookup("in", 0, 6) == Spot("in", 0, 6, 6, deaths=1)


def test_a_finished_careful_record_is_no_longer_blamed(tmp_path: Path) -> None:
    CrashNotes.load(tmp_path).note_batch({("in", 0): (0, 9)})
    notes = restart(tmp_path)
    notes.note_batch({("in", 0): (0, 9)})  # the batch again, with its death carried over
    notes.note_record("in", 0, 0)
    notes.note_batch_again()  # record 0 done; dies later in the batch
    notes = restart(tmp_path)
    assert notes.lookup("in", 0, 0) == Spot("in", 0, 0, 9, deaths=2)
    assert decide(notes.lookup("in", 0, 0)) == "careful"


def test_an_unreadable_note_is_ignored(tmp_path: Path) -> None:
    (tmp_path / NOTE_FILE).write_text("{not json")
    assert restart(tmp_path).found == []
