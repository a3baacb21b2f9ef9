"""The item catalogue: which creator and content cluster each item belongs to.

The probe and the closed loop only need an item's metadata (creator, cluster,
duration) to build events and to measure similarity; they never see a user's
latent tastes. Ids are strings, as on the wire (``recoil.core.events``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Catalog:
    """Items with their creator, content cluster and duration, by position and by id."""

    item_ids: tuple[str, ...]
    creator_ids: tuple[str, ...]  # creator of item j
    cluster_ids: tuple[str | None, ...]  # content cluster of item j (None when unknown)
    durations: tuple[float, ...]  # seconds; 0 means unknown
    _index: dict[str, int] = field(init=False, repr=False, compare=False)
    # per item, a small integer for its cluster and for its creator (same id, same code)
    _codes: dict[str, np.ndarray] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.item_ids)
        if not (len(self.creator_ids) == len(self.cluster_ids) == len(self.durations) == n):
            raise ValueError("catalog columns must all have one entry per item")
        index = {item: j for j, item in enumerate(self.item_ids)}
        if len(index) != n:
            raise ValueError("catalog item ids must be unique")
        object.__setattr__(self, "_index", index)
        codes = {}
        for name, ids in (("cluster", self.cluster_ids), ("creator", self.creator_ids)):
            code = {value: c for c, value in enumerate(dict.fromkeys(ids))}
            codes[name] = np.array([code[v] for v in ids], dtype=np.int64)
        object.__setattr__(self, "_codes", codes)

    def __len__(self) -> int:
        return len(self.item_ids)

    def index(self, item_id: str) -> int:
        """Position of an item; a clear error for an id the catalogue does not hold."""
        try:
            return self._index[item_id]
        except KeyError:
            raise KeyError(f"item {item_id!r} is not in the catalog") from None

    def creator_of(self, item_id: str) -> str:
        return self.creator_ids[self.index(item_id)]

    def cluster_of(self, item_id: str) -> str | None:
        return self.cluster_ids[self.index(item_id)]

    def same_share(self, recommended: Sequence[Sequence[str]], anchors: Sequence[str]) -> SameShare:
        """Per row, the share of recommended items from the anchor's cluster and creator."""
        if len(recommended) != len(anchors):
            raise ValueError(f"{len(recommended)} recommendation rows for {len(anchors)} anchors")
        cluster = np.zeros(len(anchors))
        creator = np.zeros(len(anchors))
        for row, (recs, anchor) in enumerate(zip(recommended, anchors, strict=True)):
            if not recs:
                continue
            a = self.index(anchor)
            same_cluster = sum(self.cluster_ids[self.index(r)] == self.cluster_ids[a] for r in recs)
            same_creator = sum(self.creator_ids[self.index(r)] == self.creator_ids[a] for r in recs)
            cluster[row] = same_cluster / len(recs)
            creator[row] = same_creator / len(recs)
        return SameShare(cluster=cluster, creator=creator)

    def same_mass(
        self, probabilities: np.ndarray, item_ids: Sequence[str], anchors: Sequence[str]
    ) -> SameShare:
        """Per row, the probability mass on the anchor's cluster and creator.

        ``probabilities`` is (B, len(item_ids)), rows summing to 1 over the items a
        recommender may show; the columns are ``item_ids`` (items the catalogue does not
        hold count for neither)."""
        if probabilities.shape != (len(anchors), len(item_ids)):
            raise ValueError(
                f"probabilities {probabilities.shape} for {len(anchors)} anchors and "
                f"{len(item_ids)} items"
            )
        known = [(j, self._index[i]) for j, i in enumerate(item_ids) if i in self._index]
        columns = np.array([j for j, _ in known], dtype=np.int64)
        rows = np.array([k for _, k in known], dtype=np.int64)
        anchor_rows = np.array([self.index(a) for a in anchors], dtype=np.int64)
        mass = probabilities[:, columns]  # (B, known items)
        same = {
            name: codes[rows][None, :] == codes[anchor_rows][:, None]  # (B, known)
            for name, codes in self._codes.items()
        }
        return SameShare(
            cluster=(mass * same["cluster"]).sum(axis=1),
            creator=(mass * same["creator"]).sum(axis=1),
        )


@dataclass(frozen=True)
class SameShare:
    """Similarity of recommendations to an anchor item, one value per row in [0, 1]."""

    cluster: np.ndarray  # (B,) share from the anchor's content cluster
    creator: np.ndarray  # (B,) share from the anchor's creator
