"""What the simulator needs from a recommender: top-K item ids for explicit histories.

``learner.offline.TrainedRecommender`` satisfies this protocol; tests use
hand-built recommenders whose behaviour is known exactly. Histories are passed
in full (oldest first); an arm's input transform happens inside ``top_k``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from recoil.core.records import EXCLUDE_SEEN, HistoryItem


class Recommender(Protocol):
    def top_k(
        self, histories: Sequence[Sequence[HistoryItem]], k: int, exclude_seen: bool = EXCLUDE_SEEN
    ) -> list[list[str]]:
        """For each history, up to ``k`` item ids, best first (``exclude_seen``: none in it;
        by default as the serving API does, ``recoil.core.records.EXCLUDE_SEEN``)."""
        ...


@runtime_checkable
class ScoringRecommender(Recommender, Protocol):
    """A recommender that also gives its scores: a softmax over them is its estimate of
    p(next positive = j | history), which the probe compares with the logs' own."""

    def item_ids(self) -> list[str]:
        """Column j of ``scores`` is ``item_ids()[j]``."""
        ...

    def scores(self, histories: Sequence[Sequence[HistoryItem]]) -> np.ndarray:
        """(B, len(item_ids())) float scores, higher is better."""
        ...


def top_k_batched(
    recommender: Recommender,
    histories: Sequence[Sequence[HistoryItem]],
    k: int,
    exclude_seen: bool,
    batch_size: int,
) -> list[list[str]]:
    """``recommender.top_k`` in chunks of ``batch_size`` histories, to bound memory."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    result: list[list[str]] = []
    for start in range(0, len(histories), batch_size):
        chunk = histories[start : start + batch_size]
        recs = recommender.top_k(chunk, k, exclude_seen=exclude_seen)
        if len(recs) != len(chunk):
            raise ValueError(f"recommender returned {len(recs)} rows for {len(chunk)} histories")
        result.extend(recs)
    return result
