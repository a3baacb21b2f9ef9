"""What one input record does to the stream, decided without I/O.

The agent (:mod:`streams.processor`) decodes a record, reads what its table
holds for the record's user, and asks :func:`decide`; then it applies the
answer (sends, dead letters, metrics, table writes). The answer is one of:

* :class:`ToDeadLetter` -- outcome ``invalid``: write a dead letter with this
  reason. The record did not decode or validate
  (:func:`recoil.core.events.parse_event`), its key is not its user id
  (:func:`check_key`), or the worker's own code failed on it: the stored state
  did not decode, or the state rule raised (``processing_error``; the event is
  parked rather than stopping the partition).
* :class:`Drop` -- outcome ``duplicate`` or ``out_of_order``: nothing to write
  (:func:`streams.state.advance`, rules 1 and 2).
* :class:`Advance` -- write the user's next state, and send the training
  example when the event is labelled; outcome the label kind, or ``none``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from recoil.core.events import InteractionEvent, Invalid
from recoil.core.labels import LabelConfig
from recoil.core.records import TrainingExample
from streams.state import Outcome, UserState, advance

# What the agent has for a user: the state as this batch or the cache left it,
# the table's bytes for it, or None for a user never seen.
Stored = UserState | bytes | None


@dataclass(frozen=True, slots=True)
class ToDeadLetter:
    """Write a dead letter for the record, with ``problem`` as its code and reason."""

    problem: Invalid
    # The exception behind a ``processing_error``, for the log (not part of the decision).
    error: Exception | None = field(default=None, compare=False)

    @property
    def outcome(self) -> Outcome:
        return "invalid"


@dataclass(frozen=True, slots=True)
class Drop:
    """Nothing to write: a ``duplicate`` or an ``out_of_order`` event."""

    outcome: Outcome


@dataclass(frozen=True, slots=True)
class Advance:
    """Store ``state`` as the user's; send ``example`` (as ``example_json``) if there is one."""

    outcome: Outcome
    user_id: str
    state: UserState
    example: TrainingExample | None = None
    example_json: bytes | None = None  # == example.to_json()
    example_label: bytes | None = None  # == example.label_json() (the LABEL_HEADER)


RecordDecision = ToDeadLetter | Drop | Advance


def check_key(key: bytes | None, event: InteractionEvent) -> Invalid | None:
    """Events must be keyed by their user id: one partition holds all of a user's events."""
    if key is None:
        return Invalid("wrong_key", "record has no key; key events by user_id")
    if key != event.user_id.encode():
        return Invalid(
            "wrong_key",
            f"record key {key[:64]!r} is not the event's user_id {event.user_id[:64]!r}",
        )
    return None


def check_record(
    key: bytes | None, parsed: InteractionEvent | Invalid
) -> InteractionEvent | Invalid:
    """A decoded record (``parse_event``'s answer), or why it is invalid once its key is seen."""
    if isinstance(parsed, InteractionEvent):
        return check_key(key, parsed) or parsed
    return parsed


def decide(
    record: InteractionEvent | Invalid, stored: Stored, labels: LabelConfig, dedupe_window: int
) -> RecordDecision:
    """What ``record`` does, given what is stored for its user (ignored for an invalid one)."""
    if isinstance(record, Invalid):
        return ToDeadLetter(record)
    try:
        if stored is None:
            state = UserState()
        elif isinstance(stored, UserState):
            state = stored
        else:
            state = UserState.from_bytes(stored)
        step = advance(state, record, labels, dedupe_window)
    except Exception as exc:  # a bug or a corrupt stored state: park the event
        return failed(exc)
    if step.state is state:  # advance changes nothing for these
        return Drop(step.outcome)
    return Advance(
        step.outcome, record.user_id, step.state, step.example, step.example_json,
        step.example_label,
    )  # fmt: skip


def failed(exc: Exception) -> ToDeadLetter:
    """The dead letter of an event the worker's own code failed on (a bug, a corrupt store)."""
    return ToDeadLetter(Invalid("processing_error", f"{type(exc).__name__}: {exc}"), exc)
