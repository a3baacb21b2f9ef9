"""Per-user stream state and the pure rule that advances it by one event.

The agent keeps one :class:`UserState` per user in its Faust table: the user's
recent history (what the sequence model sees) and the ids of the user's most
recent events (what makes retries harmless). :func:`advance` is the whole
per-event rule, so the stream and any offline check share it exactly:

1. **Dedupe.** An event whose ``event_id`` is among the user's last
   ``dedupe_window`` accepted event ids is a ``duplicate``: no example, the
   state is unchanged. Producer retries and redeliveries after a crash or a
   rebalance reuse the event id, so they land here.
2. **Out of order.** An event older than the newest item of the user's history
   (``timestamp < history[-1].timestamp``) is ``out_of_order``: it enters no
   history and yields no example. Examples already emitted were built from the
   history as it was; inserting a late item would make the table disagree with
   them, and the next example would silently see a different past than the one
   before it. Equal timestamps are in order (arrival order breaks the tie).
3. Otherwise the shared windowing rule :func:`recoil.core.windows.step` labels the
   event and appends it to the history; the outcome is its label kind or
   ``none``.

``invalid`` (undecodable input, see :mod:`streams.dlq`) is the seventh outcome;
it never reaches this module.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from monitoring.catalogue import OUTCOMES as OUTCOMES  # the metric's outcome label values
from monitoring.catalogue import Outcome as Outcome
from recoil.core.events import InteractionEvent
from recoil.core.labels import LabelConfig
from recoil.core.records import HistoryItem, TrainingExample
from recoil.core.windows import History, step

STATE_VERSION = 1  # bump when the stored layout changes; older values are rejected loudly


@dataclass(frozen=True, slots=True)
class UserState:
    """What the table holds for one user: history (oldest first) and recent event ids.

    ``history_json``/``ids_json`` carry each row's and id's JSON text, kept in
    step by :func:`advance` and :meth:`from_bytes`, so encoding a state or an
    example joins ready-made strings instead of re-serialising 50 rows per event.
    """

    history: History = ()
    recent_event_ids: tuple[str, ...] = ()  # oldest first, at most the dedupe window
    history_json: tuple[str, ...] = field(default=(), compare=False, repr=False)
    ids_json: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def rows_json(self) -> tuple[str, ...]:
        if len(self.history_json) == len(self.history):
            return self.history_json
        return tuple(_dumps(item.to_row()) for item in self.history)

    def to_bytes(self) -> bytes:
        """The table value: compact JSON, history rows in ``HISTORY_COLUMNS`` order."""
        ids = self.ids_json
        if len(ids) != len(self.recent_event_ids):
            ids = tuple(_dumps(i) for i in self.recent_event_ids)
        return (
            f'{{"v":{STATE_VERSION},"history":[{",".join(self.rows_json())}],'
            f'"ids":[{",".join(ids)}]}}'
        ).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> UserState:
        obj: Any = json.loads(raw)
        if not isinstance(obj, dict) or obj.get("v") != STATE_VERSION:
            raise ValueError(f"unknown user state layout: {bytes(raw)[:80]!r}")
        rows = obj["history"]
        ids = tuple(obj["ids"])
        return cls(
            history=tuple(HistoryItem.from_row(row) for row in rows),
            recent_event_ids=ids,
            history_json=tuple(_dumps(row) for row in rows),
            ids_json=tuple(_dumps(i) for i in ids),
        )


@dataclass(frozen=True, slots=True)
class Advanced:
    """The result of one event: the user's next state, what happened, and the example."""

    state: UserState
    outcome: Outcome
    example: TrainingExample | None
    example_json: bytes | None = None  # == example.to_json(), built from cached row JSON
    example_label: bytes | None = None  # == example.label_json() (the LABEL_HEADER)


def advance(
    state: UserState, event: InteractionEvent, labels: LabelConfig, dedupe_window: int
) -> Advanced:
    """Apply one valid event to a user's state (the rule in the module docstring)."""
    if event.event_id in state.recent_event_ids:
        return Advanced(state, "duplicate", None)
    if state.history and event.timestamp < state.history[-1].timestamp:
        return Advanced(state, "out_of_order", None)
    rows = state.rows_json()
    history, example = step(event, state.history, labels)
    keep = labels.history_length
    next_state = UserState(
        history=history,
        recent_event_ids=(*state.recent_event_ids, event.event_id)[-dedupe_window:],
        history_json=(*rows, _dumps(history[-1].to_row()))[-keep:],
        ids_json=(*state.ids_json, _dumps(event.event_id))[-dedupe_window:],
    )
    if example is None:
        return Advanced(next_state, "none", None)
    label = label_json(example)
    value = with_history(label, rows[-keep:])
    return Advanced(next_state, example.label_kind, example, value, label.encode())


def label_json(example: TrainingExample) -> str:
    """``example.label_json()`` (the record's ``LABEL_HEADER``), as text."""
    shell = {  # TrainingExample.to_dict()'s keys, in its order, history left empty
        "event_id": example.event_id,
        "user_id": example.user_id,
        "timestamp": example.timestamp,
        "history": [],
        "label_item_id": example.label_item_id,
        "label_creator_id": example.label_creator_id,
        "label_cluster_id": example.label_cluster_id,
        "label_kind": example.label_kind,
        "label_weight": example.label_weight,
    }
    return _dumps(shell)


def with_history(label: str, history_json: tuple[str, ...]) -> bytes:
    """The example's JSON: ``label_json``'s text with the history rows' JSON put in."""
    # Keys and values before "history" are JSON strings and a number, in which a
    # quote is always escaped, so the first '"history":[]' is the key itself.
    return label.replace('"history":[]', f'"history":[{",".join(history_json)}]', 1).encode()


# json.dumps(value, separators=(",", ":")) with the encoder built once: dumps builds
# a new one per call when given separators, which is half the cost of a history row.
_dumps = json.JSONEncoder(separators=(",", ":")).encode


def replay_in_arrival_order(
    events: Iterable[InteractionEvent], labels: LabelConfig, dedupe_window: int
) -> tuple[list[TrainingExample], dict[str, UserState]]:
    """What the stream emits for events arriving in this order: examples and final states.

    For events already in per-user time order without repeated ids beyond the
    window, the examples equal :func:`recoil.core.windows.events_to_examples`
    (grouped differently: here they come in arrival order).
    """
    states: dict[str, UserState] = {}
    examples: list[TrainingExample] = []
    for event in events:
        result = advance(states.get(event.user_id, UserState()), event, labels, dedupe_window)
        states[event.user_id] = result.state
        if result.example is not None:
            examples.append(result.example)
    return examples, states
