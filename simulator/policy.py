"""The logging policy: what the world's users were shown while the training data was logged.

Like a production recommender that does not use dislikes, it re-exposes
creators and clusters the user recently *engaged* with (dwell, likes), and
ignores dislikes: a long dwell that ended in a dislike still counts as
engagement. That is what puts "what follows a dislike" into the logs: the
user is shown the creator or cluster again and (per the world's response
model) tends to dislike or skip it. A policy that picks items independently of
the history shows none of this, and no model can learn to respond (issue 3).

Each impression draws one of four sources:

- same creator as a recent engaged item (weighted by engagement and recency),
- same cluster as a recent engaged item,
- a cluster engaged with over the whole history (long-term interest),
- exploration: a uniformly random item.

Items already shown to the user are not shown again. The policy sees only what
was logged (item, dwell, like), never the world's latent tastes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class LoggingPolicyConfig:
    """Mixture weights of the logging policy; the rest of the mass is exploration."""

    p_same_creator: float = 0.25  # re-expose a recently engaged creator
    p_same_cluster: float = 0.30  # re-expose a recently engaged cluster
    p_long_term: float = 0.20  # a cluster engaged over the whole history
    recent_window: int = 10  # how many recent impressions count as "recent"
    recency_decay: float = 0.8  # weight of an impression i steps back: decay ** i
    skip_engagement: float = 0.05  # engagement credited to a skip (< 10% dwell)

    def __post_init__(self) -> None:
        total = self.p_same_creator + self.p_same_cluster + self.p_long_term
        probs = (self.p_same_creator, self.p_same_cluster, self.p_long_term)
        if min(probs) < 0 or total > 1:
            raise ValueError("logging policy probabilities must be >= 0 and sum to <= 1")
        if self.recent_window < 1 or not 0 < self.recency_decay <= 1:
            raise ValueError("need recent_window >= 1 and 0 < recency_decay <= 1")

    @property
    def p_explore(self) -> float:
        return 1.0 - self.p_same_creator - self.p_same_cluster - self.p_long_term


@dataclass
class PolicyMemory:
    """What the policy has logged about one user: recent engagement and items shown."""

    recent: list[tuple[int, float]] = field(default_factory=list)  # (item, engagement)
    cluster_engagement: dict[int, float] = field(default_factory=dict)
    seen: set[int] = field(default_factory=set)

    def copy(self) -> PolicyMemory:
        """An independent copy: observing into it leaves this one as it is."""
        return PolicyMemory(list(self.recent), dict(self.cluster_engagement), set(self.seen))


class EngagementPolicy:
    """Re-exposes recently engaged creators and clusters; never uses dislikes."""

    def __init__(
        self,
        item_creator: np.ndarray,
        item_cluster: np.ndarray,
        config: LoggingPolicyConfig,
    ) -> None:
        self.config = config
        self.item_creator = item_creator.tolist()  # python ints: fast scalar lookups
        self.item_cluster = item_cluster.tolist()
        self.num_items = len(self.item_creator)
        self.creator_items = _group(self.item_creator)
        self.cluster_items = _group(self.item_cluster)

    def engagement(self, dwell_ratio: float, liked: bool) -> float:
        """How much an impression tells an engagement-driven system the user wants more."""
        if dwell_ratio < 0.1:
            return self.config.skip_engagement
        return min(dwell_ratio, 1.0) + (1.0 if liked else 0.0)

    def observe(self, memory: PolicyMemory, item: int, dwell_ratio: float, liked: bool) -> None:
        """Log one impression (the dislike flag is deliberately not an argument)."""
        weight = self.engagement(dwell_ratio, liked)
        memory.recent.append((item, weight))
        del memory.recent[: -self.config.recent_window]
        cluster = self.item_cluster[item]
        memory.cluster_engagement[cluster] = memory.cluster_engagement.get(cluster, 0.0) + weight
        memory.seen.add(item)

    def choose(self, memory: PolicyMemory, rng: np.random.Generator) -> int:
        """The next item to show; falls back to exploration when a source is exhausted."""
        cfg = self.config
        u = float(rng.random())
        item: int | None = None
        if memory.recent and u < cfg.p_same_creator + cfg.p_same_cluster:
            anchor = self._recent_anchor(memory, rng)
            if u < cfg.p_same_creator:
                item = self._unseen(self.creator_items[self.item_creator[anchor]], memory, rng)
            if item is None:
                item = self._unseen(self.cluster_items[self.item_cluster[anchor]], memory, rng)
        elif memory.cluster_engagement and u < 1.0 - cfg.p_explore:
            clusters = list(memory.cluster_engagement)
            weights = np.array([memory.cluster_engagement[k] for k in clusters])
            cluster = clusters[int(rng.choice(len(clusters), p=weights / weights.sum()))]
            item = self._unseen(self.cluster_items[cluster], memory, rng)
        if item is None:
            item = self._explore(memory, rng)
        return item

    def _recent_anchor(self, memory: PolicyMemory, rng: np.random.Generator) -> int:
        n = len(memory.recent)
        weights = np.array(
            [w * self.config.recency_decay ** (n - 1 - i) for i, (_, w) in enumerate(memory.recent)]
        )
        return memory.recent[int(rng.choice(n, p=weights / weights.sum()))][0]

    def _unseen(
        self, candidates: list[int], memory: PolicyMemory, rng: np.random.Generator
    ) -> int | None:
        unseen = [j for j in candidates if j not in memory.seen]
        return unseen[int(rng.integers(len(unseen)))] if unseen else None

    def _explore(self, memory: PolicyMemory, rng: np.random.Generator) -> int:
        if len(memory.seen) >= self.num_items:
            raise ValueError("the user has seen every item; use fewer steps or more items")
        while True:
            item = int(rng.integers(self.num_items))
            if item not in memory.seen:
                return item


def _group(keys: list[int]) -> list[list[int]]:
    """Positions grouped by key: ``groups[k]`` lists every j with ``keys[j] == k``."""
    groups: list[list[int]] = [[] for _ in range(max(keys) + 1)]
    for j, k in enumerate(keys):
        groups[k].append(j)
    return groups
