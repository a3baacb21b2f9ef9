"""Small deterministic logged data for the learner's tests and benchmarks.

Not the simulator (that lives in ``simulator/``): just enough structure for a
sequence model to learn something checkable. Items belong to clusters and
creators; each user likes some clusters and dislikes one; a sticky logging
policy keeps showing the cluster of the previous item. Events go through the
real labelling and windowing rules (``recoil.core.windows.events_to_examples``).
"""

from __future__ import annotations

from typing import TypedDict, Unpack

import numpy as np

from recoil.core.events import InteractionEvent
from recoil.core.labels import LabelConfig
from recoil.core.records import TrainingExample
from recoil.core.windows import events_to_examples


def item_cluster(item: int, num_clusters: int) -> int:
    return item % num_clusters


def synthetic_events(
    num_users: int,
    events_per_user: int,
    num_items: int = 200,
    num_clusters: int = 10,
    items_per_creator: int = 5,
    stickiness: float = 0.8,
    seed: int = 0,
) -> list[InteractionEvent]:
    """Events of users consuming a sticky stream of items (one cluster at a time)."""
    rng = np.random.default_rng(seed)
    by_cluster = [np.arange(c, num_items, num_clusters) for c in range(num_clusters)]
    events: list[InteractionEvent] = []
    for u in range(num_users):
        liked = set(rng.choice(num_clusters, size=2, replace=False).tolist())
        disliked = int(rng.choice([c for c in range(num_clusters) if c not in liked]))
        cluster = int(rng.integers(num_clusters))
        now = 1_700_000_000.0 + u
        for t in range(events_per_user):
            if rng.random() > stickiness:
                cluster = int(rng.integers(num_clusters))
            item = int(rng.choice(by_cluster[cluster]))
            dislike = cluster == disliked and rng.random() < 0.5
            if cluster in liked:
                ratio = rng.uniform(0.8, 1.2)
            elif cluster == disliked:
                ratio = rng.uniform(0.0, 0.1) if rng.random() < 0.5 else rng.uniform(0.8, 1.0)
            else:
                ratio = rng.uniform(0.0, 0.6)
            if dislike or (ratio < 0.5 and cluster not in liked):
                cluster = int(rng.integers(num_clusters))  # the user moves on
            now += float(rng.uniform(5.0, 60.0))
            events.append(
                InteractionEvent(
                    event_id=f"u{u}-e{t}",
                    user_id=f"u{u}",
                    item_id=f"i{item}",
                    creator_id=f"c{item // items_per_creator}",
                    cluster_id=f"k{item_cluster(item, num_clusters)}",
                    timestamp=now,
                    surface="home",
                    dwell_seconds=30.0 * ratio,
                    item_duration_seconds=30.0,
                    liked=False,
                    disliked=bool(dislike),
                    dismissed=False,
                )
            )
    return events


class LogShape(TypedDict, total=False):
    """What ``synthetic_events`` takes besides the counts (its defaults apply)."""

    num_items: int
    num_clusters: int
    items_per_creator: int
    stickiness: float
    seed: int


def synthetic_examples(
    num_users: int, events_per_user: int, *, history_length: int = 50, **shape: Unpack[LogShape]
) -> list[TrainingExample]:
    """``synthetic_events`` windowed into training examples by the real rules."""
    events = synthetic_events(num_users, events_per_user, **shape)
    return events_to_examples(events, LabelConfig(history_length=history_length))
