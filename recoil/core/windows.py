"""Sequence windows: a user's recent history and the training example of an event.

Pure functions shared by the stream agents (one event at a time, history kept
in a Faust table) and the offline paths (experiments, backtests), so both
build byte-identical examples from the same events.

A training example holds the history *before* its event (oldest first, at most
``history_length`` items); the event itself then enters the history, whether
labelled or not.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from recoil.core.events import InteractionEvent
from recoil.core.labels import (
    LabelConfig,
    dwell_bucket,
    gap_bucket,
    is_negative_feedback,
    label_event,
)
from recoil.core.records import HistoryItem, TrainingExample

History = tuple[HistoryItem, ...]


def history_item(
    event: InteractionEvent, previous: HistoryItem | None, config: LabelConfig
) -> HistoryItem:
    """The event as a history item; the gap is measured from the previous item."""
    gap = None if previous is None else event.timestamp - previous.timestamp
    return HistoryItem(
        item_id=event.item_id,
        creator_id=event.creator_id,
        cluster_id=event.cluster_id,
        disliked=is_negative_feedback(event, config),
        dwell_bucket=dwell_bucket(event, config),
        gap_bucket=gap_bucket(gap),
        timestamp=event.timestamp,
    )


def append_history(history: History, item: HistoryItem, max_len: int) -> History:
    """The history with ``item`` appended, truncated to the newest ``max_len`` items."""
    return (*history, item)[-max_len:]


def training_example(
    event: InteractionEvent, history: History, config: LabelConfig
) -> TrainingExample | None:
    """The example a labelled event yields given the history before it, else None."""
    label = label_event(event, config)
    if label is None:
        return None
    kind, weight = label
    return TrainingExample(
        event_id=event.event_id,
        user_id=event.user_id,
        timestamp=event.timestamp,
        history=history[-config.history_length :],
        label_item_id=event.item_id,
        label_creator_id=event.creator_id,
        label_cluster_id=event.cluster_id,
        label_kind=kind,
        label_weight=weight,
    )


def step(
    event: InteractionEvent, history: History, config: LabelConfig
) -> tuple[History, TrainingExample | None]:
    """Process one event: its example (if labelled) and the user's next history."""
    example = training_example(event, history, config)
    previous = history[-1] if history else None
    item = history_item(event, previous, config)
    return append_history(history, item, config.history_length), example


def events_by_user(events: Iterable[InteractionEvent]) -> dict[str, list[InteractionEvent]]:
    """Events grouped by user (users in order of first appearance), each user's in time
    order: by (timestamp, event_id), the order the stream agents apply."""
    by_user: dict[str, list[InteractionEvent]] = defaultdict(list)
    for event in events:
        by_user[event.user_id].append(event)
    for user_events in by_user.values():
        user_events.sort(key=lambda e: (e.timestamp, e.event_id))
    return dict(by_user)


def events_to_examples(
    events: Iterable[InteractionEvent], config: LabelConfig
) -> list[TrainingExample]:
    """Offline windowing: group by user, order by (timestamp, event_id), step through.

    Duplicate event ids within a user are dropped (first occurrence wins), as
    the stream agents do. Examples come out grouped by user, in time order.
    """
    examples: list[TrainingExample] = []
    for user_events in events_by_user(events).values():
        seen: set[str] = set()
        history: History = ()
        for event in user_events:
            if event.event_id in seen:
                continue
            seen.add(event.event_id)
            history, example = step(event, history, config)
            if example is not None:
                examples.append(example)
    return examples


def user_histories(events: Iterable[InteractionEvent], config: LabelConfig) -> dict[str, History]:
    """Each user's final history after all their events (for serving and evaluation)."""
    result: dict[str, History] = {}
    for user, user_events in events_by_user(events).items():
        history: History = ()
        for event in user_events:
            history, _ = step(event, history, config)
        result[user] = history
    return result
