"""Offline evaluation on held-out logged events: a time split per user, then ranking metrics.

Two protocols:

- ``holdout_ranking`` (world experiment): one recommendation list per user,
  from the history at the split; Recall@K and NDCG@K of the user's held-out
  positive items (users without one are skipped).
- ``next_item_ranking`` (backtest): every held-out event is a test case whose
  history is everything before it (earlier held-out events included, as
  input only); HR@K and NDCG@K of its item, separately for positive and for
  disliked events. A disliked item in the top K is a recommendation the user
  had told us they did not want.

Seen items are excluded from every list (a retrieval system does not re-serve them).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from recoil.core.events import InteractionEvent
from recoil.core.labels import LabelConfig, is_negative_feedback, is_positive
from recoil.core.windows import History, events_by_user, step
from simulator.metrics import (
    bootstrap_relative_change,
    hit_at_k,
    ndcg_at_k,
    ndcg_single,
    recall_at_k,
    relative_change,
)
from simulator.recommender import Recommender, top_k_batched


def split_last_events(
    events: Iterable[InteractionEvent], holdout: int
) -> tuple[list[InteractionEvent], list[InteractionEvent]]:
    """Per user, in time order: all but the last ``holdout`` events, and those last ones.

    Users with no more than ``holdout`` events keep them all in training.
    """
    if holdout < 1:
        raise ValueError("holdout must be >= 1 event per user")
    train: list[InteractionEvent] = []
    test: list[InteractionEvent] = []
    for user_events in events_by_user(events).values():
        cut = len(user_events) - holdout if len(user_events) > holdout else len(user_events)
        train.extend(user_events[:cut])
        test.extend(user_events[cut:])
    return train, test


@dataclass(frozen=True)
class HoldoutRanking:
    recall: float  # mean over evaluated users
    ndcg: float
    per_user_recall: np.ndarray  # (users,) in ``users`` order
    per_user_ndcg: np.ndarray
    users: list[str]


def holdout_ranking(
    recommender: Recommender,
    histories: dict[str, History],
    test_events: Iterable[InteractionEvent],
    labels: LabelConfig,
    k: int,
    batch_size: int = 4096,
) -> HoldoutRanking:
    """Recall@K / NDCG@K of each user's held-out positives from the history at the split."""
    relevant: dict[str, set[str]] = defaultdict(set)
    for event in test_events:
        if is_positive(event, labels):
            relevant[event.user_id].add(event.item_id)
    users = sorted(u for u in relevant if u in histories)
    recs = top_k_batched(
        recommender, [histories[u] for u in users], k, exclude_seen=True, batch_size=batch_size
    )
    recall = np.array([recall_at_k(r, relevant[u], k) for r, u in zip(recs, users, strict=True)])
    ndcg = np.array([ndcg_at_k(r, relevant[u], k) for r, u in zip(recs, users, strict=True)])
    return HoldoutRanking(
        recall=float(recall.mean()) if users else float("nan"),
        ndcg=float(ndcg.mean()) if users else float("nan"),
        per_user_recall=recall,
        per_user_ndcg=ndcg,
        users=users,
    )


@dataclass(frozen=True)
class NextItemRanking:
    hr_positive: float  # share of held-out positives whose item is in the top K
    ndcg_positive: float
    hr_dislike: float  # share of held-out dislikes whose item is in the top K
    positives: int  # test cases of each kind
    dislikes: int
    hits_positive: np.ndarray  # (positives,) 0/1 per case, for intervals
    hits_dislike: np.ndarray  # (dislikes,)
    deep_k: int  # a deeper cutoff, where rare hits (disliked items) are not all zero
    hits_positive_deep: np.ndarray  # (positives,) 0/1: in the top deep_k
    hits_dislike_deep: np.ndarray  # (dislikes,)
    # (dislikes,) 0/1: an item of the disliked item's creator is in the top K (all zero
    # without a creator map). Lower is better: the dislike said "less of this creator".
    hits_dislike_creator: np.ndarray

    @property
    def hr_positive_deep(self) -> float:
        return float(self.hits_positive_deep.mean()) if self.positives else float("nan")

    @property
    def hr_dislike_deep(self) -> float:
        return float(self.hits_dislike_deep.mean()) if self.dislikes else float("nan")

    @property
    def hr_dislike_creator(self) -> float:
        return float(self.hits_dislike_creator.mean()) if self.dislikes else float("nan")


def mean_ranking(rankings: Sequence[NextItemRanking]) -> NextItemRanking:
    """The rankings of one arm trained with several seeds, averaged per test case.

    Each case's hit becomes the share of the seeds that hit it, so the HRs are the
    seeds' mean and a paired interval against another arm (averaged over the same
    seeds) still resamples the same cases together. The rankings must be of the same
    cases in the same order, as every arm of one backtest is.
    """
    if not rankings:
        raise ValueError("mean_ranking needs at least one ranking")
    first = rankings[0]
    if any((r.positives, r.dislikes) != (first.positives, first.dislikes) for r in rankings):
        raise ValueError("mean_ranking: the rankings are not of the same test cases")
    if len(rankings) == 1:
        return first

    def mean(name: str) -> np.ndarray:
        return np.mean([getattr(r, name) for r in rankings], axis=0)

    hits_positive, hits_dislike = mean("hits_positive"), mean("hits_dislike")
    return NextItemRanking(
        hr_positive=float(hits_positive.mean()) if first.positives else float("nan"),
        ndcg_positive=float(np.mean([r.ndcg_positive for r in rankings])),
        hr_dislike=float(hits_dislike.mean()) if first.dislikes else float("nan"),
        positives=first.positives,
        dislikes=first.dislikes,
        hits_positive=hits_positive,
        hits_dislike=hits_dislike,
        deep_k=first.deep_k,
        hits_positive_deep=mean("hits_positive_deep"),
        hits_dislike_deep=mean("hits_dislike_deep"),
        hits_dislike_creator=mean("hits_dislike_creator"),
    )


def next_item_cases(
    train_histories: dict[str, History],
    test_events: Sequence[InteractionEvent],
    labels: LabelConfig,
) -> tuple[list[History], list[InteractionEvent]]:
    """Each held-out event with the history before it (test events enter it as input)."""
    by_user = events_by_user(test_events)
    histories: list[History] = []
    cases: list[InteractionEvent] = []
    for user in sorted(by_user):
        history = train_histories.get(user, ())
        for event in by_user[user]:
            if history:
                histories.append(history)
                cases.append(event)
            history, _ = step(event, history, labels)
    return histories, cases


def next_item_ranking(
    recommender: Recommender,
    histories: Sequence[History],
    cases: Sequence[InteractionEvent],
    labels: LabelConfig,
    k: int,
    batch_size: int = 4096,
    deep_k: int | None = None,
    creator_of: Mapping[str, str] | None = None,
) -> NextItemRanking:
    """HR@K and NDCG@K of held-out positives, HR@K of held-out dislikes, and both hit
    rates at ``deep_k`` (default K) from the same ranking. With ``creator_of`` (item id
    -> creator id), also whether the top K holds any item of a disliked item's creator."""
    deep_k = max(k, deep_k or k)
    recs = top_k_batched(recommender, histories, deep_k, exclude_seen=True, batch_size=batch_size)
    hits_pos: list[float] = []
    ndcg_pos: list[float] = []
    hits_dis: list[float] = []
    deep_pos: list[float] = []
    deep_dis: list[float] = []
    creator_dis: list[float] = []
    for rec, event in zip(recs, cases, strict=True):
        if is_negative_feedback(event, labels):
            hits_dis.append(hit_at_k(rec, event.item_id, k))
            deep_dis.append(hit_at_k(rec, event.item_id, deep_k))
            top_creators = {creator_of.get(i) for i in rec[:k]} if creator_of else set()
            creator_dis.append(float(event.creator_id in top_creators))
            continue
        if is_positive(event, labels):
            hits_pos.append(hit_at_k(rec, event.item_id, k))
            ndcg_pos.append(ndcg_single(rec, event.item_id, k))
            deep_pos.append(hit_at_k(rec, event.item_id, deep_k))
    return NextItemRanking(
        hr_positive=float(np.mean(hits_pos)) if hits_pos else float("nan"),
        ndcg_positive=float(np.mean(ndcg_pos)) if ndcg_pos else float("nan"),
        hr_dislike=float(np.mean(hits_dis)) if hits_dis else float("nan"),
        positives=len(hits_pos),
        dislikes=len(hits_dis),
        hits_positive=np.array(hits_pos),
        hits_dislike=np.array(hits_dis),
        deep_k=deep_k,
        hits_positive_deep=np.array(deep_pos),
        hits_dislike_deep=np.array(deep_dis),
        hits_dislike_creator=np.array(creator_dis),
    )


def paired_changes(
    base: NextItemRanking, r: NextItemRanking, rng: np.random.Generator
) -> dict[str, Any]:
    """Relative changes of ``r`` against ``base`` with paired 95% intervals (the same
    test cases for both arms are resampled together)."""
    pairs = {
        "hr_at_10": (base.hits_positive, r.hits_positive),
        "hr_at_10_dislikes": (base.hits_dislike, r.hits_dislike),
        "hr_at_10_dislike_creator": (base.hits_dislike_creator, r.hits_dislike_creator),
        "hr_at_100": (base.hits_positive_deep, r.hits_positive_deep),
        "hr_at_100_dislikes": (base.hits_dislike_deep, r.hits_dislike_deep),
    }
    result: dict[str, Any] = {}
    for key, (b, t) in pairs.items():
        result[key] = relative_change(b, t)
        result[f"{key}_ci95"] = bootstrap_relative_change(b, t, rng)
    return result
