"""Record types that cross Kafka topics between the parts, with their JSON codecs.

``TrainingExample`` (topic ``training-examples``, key user id) is what streams/
emits for every labelled event and what learner/ trains on: the user's
history *before* the event, and the label item with its kind and weight.
History items are encoded as compact arrays in ``HISTORY_COLUMNS`` order.

Each example record also carries the header ``LABEL_HEADER``: the same example with
an empty history (``label_json``), a tenth of the value's bytes. A consumer that
only needs the label (a learner whose arm does not train the example's kind, see
``learner.kafka_source``) reads it instead of the value; a record without the
header (another producer) is read whole, so the header is an optimisation, never
a requirement.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Literal

LabelKind = Literal["positive", "dislike", "skip"]
LABEL_KINDS: tuple[LabelKind, ...] = ("positive", "dislike", "skip")

NUM_DWELL_BUCKETS = 6  # bucket 0 is a skip (shortest dwell); the last is a full watch or more
NUM_GAP_BUCKETS = 8  # log-scale buckets of the time since the previous history item
# Whether a recommendation leaves out the items of the history it is for, unless the
# caller says otherwise (serving's GET /recommend/{user_id} has no body: always this). A
# feed does not show a user again what they have just watched, and the simulator's probes
# and evaluations measure exactly that. Serving, the learner's recommenders and the
# simulator's all default to this one value.
EXCLUDE_SEEN = True

# Kafka header of a training-example record: ``TrainingExample.label_json()`` (see above)
LABEL_HEADER = "recoil.label"

HISTORY_COLUMNS = (
    "item_id", "creator_id", "cluster_id", "disliked", "dwell_bucket", "gap_bucket", "timestamp",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class HistoryItem:
    """One past interaction as the sequence model sees it."""

    item_id: str
    creator_id: str
    cluster_id: str | None
    disliked: bool
    dwell_bucket: int  # 0 .. NUM_DWELL_BUCKETS-1, 0 = skip
    gap_bucket: int  # 0 .. NUM_GAP_BUCKETS-1
    timestamp: float

    def to_row(self) -> list[Any]:
        return [
            self.item_id, self.creator_id, self.cluster_id, int(self.disliked),
            self.dwell_bucket, self.gap_bucket, self.timestamp,
        ]  # fmt: skip

    @classmethod
    def from_row(cls, row: list[Any]) -> HistoryItem:
        item, creator, cluster, disliked, dwell, gap, ts = row
        return cls(item, creator, cluster, bool(disliked), int(dwell), int(gap), float(ts))


@dataclass(frozen=True, slots=True)
class TrainingExample:
    """A labelled event with the history that preceded it (oldest first)."""

    event_id: str
    user_id: str
    timestamp: float
    history: tuple[HistoryItem, ...]
    label_item_id: str
    label_creator_id: str
    label_cluster_id: str | None
    label_kind: LabelKind
    label_weight: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "user_id": self.user_id,
            "timestamp": self.timestamp,
            "history": [h.to_row() for h in self.history],
            "label_item_id": self.label_item_id,
            "label_creator_id": self.label_creator_id,
            "label_cluster_id": self.label_cluster_id,
            "label_kind": self.label_kind,
            "label_weight": self.label_weight,
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    def label_json(self) -> bytes:
        """``LABEL_HEADER``'s value: this example's JSON with an empty history."""
        return dataclasses.replace(self, history=()).to_json()

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> TrainingExample:
        kind = obj["label_kind"]
        if kind not in LABEL_KINDS:
            raise ValueError(f"unknown label_kind {kind!r}")
        return cls(
            event_id=obj["event_id"],
            user_id=obj["user_id"],
            timestamp=float(obj["timestamp"]),
            history=tuple(HistoryItem.from_row(r) for r in obj["history"]),
            label_item_id=obj["label_item_id"],
            label_creator_id=obj["label_creator_id"],
            label_cluster_id=obj["label_cluster_id"],
            label_kind=kind,
            label_weight=float(obj["label_weight"]),
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> TrainingExample:
        return cls.from_dict(json.loads(raw))
