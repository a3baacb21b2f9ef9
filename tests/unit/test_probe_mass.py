"""The probe's second measure: the change of a scoring recommender's probability mass on
the anchor's cluster / creator, the quantity of the logs' yardstick."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from recoil.core.labels import LabelConfig
from recoil.core.records import HistoryItem
from simulator import probe
from simulator.recommender import ScoringRecommender
from tests.support.catalogs import block_catalog

# 2 clusters x 2 creators x 30 items
CATALOG = block_catalog(120, per_creator=30, per_cluster=60)
LABELS = LabelConfig()
DROP = math.log(3.0)  # a dislike divides every same-cluster item's weight by 3


class ClusterScores:
    """Score 2 for the newest item's cluster, 0 elsewhere; ``DROP`` less after a dislike.

    Its top 20 after the anchor are all from the anchor's cluster either way (2 - ln 3 >
    0), so the top-20 share does not move while the mass on the cluster falls."""

    def item_ids(self) -> list[str]:
        return list(CATALOG.item_ids)

    def scores(self, histories: Sequence[Sequence[HistoryItem]]) -> np.ndarray:
        clusters = np.array(CATALOG.cluster_ids)
        rows = []
        for history in histories:
            last = history[-1]
            same = 2.0 - (DROP if last.disliked else 0.0)
            rows.append(np.where(clusters == last.cluster_id, same, 0.0))
        return np.array(rows, dtype=np.float32)

    def top_k(
        self, histories: Sequence[Sequence[HistoryItem]], k: int, exclude_seen: bool = True
    ) -> list[list[str]]:
        scores = self.scores(histories)
        probabilities = probe.unseen_probabilities(scores, self.item_ids(), histories)
        order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
        return [[CATALOG.item_ids[j] for j in row] for row in order]


def test_a_scoring_recommender_is_recognised_and_a_plain_one_is_not() -> None:
    assert isinstance(ClusterScores(), ScoringRecommender)

    class TopOnly:
        def top_k(
            self, histories: Sequence[Sequence[HistoryItem]], k: int, exclude_seen: bool = True
        ) -> list[list[str]]:
            return [list(CATALOG.item_ids[:k]) for _ in histories]

    assert not isinstance(TopOnly(), ScoringRecommender)
    branches = probe.counterfactual_branches([()], ["i0"], CATALOG, LABELS)
    result = probe.measure_responsiveness(branches, TopOnly(), CATALOG, 5, np.random.default_rng(0))
    assert result.mass_cluster is None and result.ci95_mass_cluster is None


def test_mass_moves_where_the_top_20_share_does_not() -> None:
    branches = probe.counterfactual_branches([(), ()], ["i0", "i70"], CATALOG, LABELS)
    result = probe.measure_responsiveness(
        branches, ClusterScores(), CATALOG, 20, np.random.default_rng(0), 200
    )
    assert result.cluster == pytest.approx(0.0)  # 20 of 20 from the cluster both times
    # 59 unseen items of the cluster (the anchor is seen), 60 elsewhere
    same = 59 * math.exp(2.0)
    base = same / (same + 60)
    disliked = (same / 3) / (same / 3 + 60)
    assert result.mass_cluster == pytest.approx(disliked / base - 1.0)
    assert result.mass_cluster is not None and result.mass_cluster < -0.15  # -19.5%
    # the anchor's creator is half its cluster: its mass moves by the same factor
    assert result.mass_creator == pytest.approx(disliked / base - 1.0)
    assert result.ci95_mass_cluster == pytest.approx((disliked / base - 1.0,) * 2)


def test_same_mass_sums_the_anchor_cluster_and_creator_columns() -> None:
    ids = ["i0", "i1", "i30", "i60", "unknown"]  # i0, i1: creator c0; i30: c1; i60: cluster k1
    probabilities = np.array([[0.1, 0.2, 0.3, 0.3, 0.1], [0.0, 0.0, 0.0, 1.0, 0.0]])
    share = CATALOG.same_mass(probabilities, ids, ["i0", "i61"])
    assert share.cluster == pytest.approx([0.6, 1.0])
    assert share.creator == pytest.approx([0.3, 1.0])
    with pytest.raises(ValueError, match="probabilities"):
        CATALOG.same_mass(probabilities, ids[:4], ["i0", "i61"])


def test_unseen_probabilities_leave_out_the_history_and_sum_to_one() -> None:
    item = HistoryItem("i1", "c0", "k0", False, 5, 0, 0.0)
    scores = np.array([[0.0, 5.0, 0.0], [1.0, 1.0, 1.0]], dtype=np.float32)
    ids = ["i0", "i1", "i2"]
    p = probe.unseen_probabilities(scores, ids, [[item], [item]])
    assert p[:, 1] == pytest.approx([0.0, 0.0])
    assert p.sum(axis=1) == pytest.approx([1.0, 1.0])
    everything = [HistoryItem(i, "c0", "k0", False, 5, 0, 0.0) for i in ids]
    assert probe.unseen_probabilities(scores[:1], ids, [everything]) == pytest.approx(0.0)
