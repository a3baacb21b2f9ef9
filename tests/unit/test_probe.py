"""The counterfactual probe on hand-built recommenders whose responsiveness is known exactly."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from recoil.core.labels import LabelConfig
from recoil.core.records import HistoryItem
from simulator import probe
from tests.support.catalogs import block_catalog

# 3 clusters x 3 creators x 60 items: a creator always has unseen items left
# (a history holds at most 50), so the recommenders below are exact.
CATALOG = block_catalog(540, per_creator=60, per_cluster=180)
LABELS = LabelConfig()


class ShareRecommender:
    """After the last item, recommends ``(same creator, same cluster, elsewhere)`` counts.

    With top 10: 5 / 3 / 2 after a plain watch, 1 / 2 / 7 after a dislike
    (``dislike_aware``), so creator share goes 0.5 -> 0.1 (-80%) and cluster
    share 0.8 -> 0.3 (-62.5%). A recommender blind to the flag never changes.
    """

    def __init__(self, dislike_aware: bool) -> None:
        self.dislike_aware = dislike_aware
        self.calls = 0

    def top_k(
        self, histories: Sequence[Sequence[HistoryItem]], k: int, exclude_seen: bool = False
    ) -> list[list[str]]:
        self.calls += 1
        return [self._one(h, k, exclude_seen) for h in histories]

    def _one(self, history: Sequence[HistoryItem], k: int, exclude_seen: bool) -> list[str]:
        last = history[-1]
        seen = {h.item_id for h in history} if exclude_seen else set()
        counts = (1, 2) if self.dislike_aware and last.disliked else (5, 3)
        same_creator = [
            i for j, i in enumerate(CATALOG.item_ids)
            if CATALOG.creator_ids[j] == last.creator_id and i not in seen
        ]  # fmt: skip
        same_cluster = [
            i for j, i in enumerate(CATALOG.item_ids)
            if CATALOG.cluster_ids[j] == last.cluster_id
            and CATALOG.creator_ids[j] != last.creator_id and i not in seen
        ]  # fmt: skip
        elsewhere = [
            i for j, i in enumerate(CATALOG.item_ids)
            if CATALOG.cluster_ids[j] != last.cluster_id and i not in seen
        ]  # fmt: skip
        picked = same_creator[: counts[0]] + same_cluster[: counts[1]]
        return picked + elsewhere[: k - len(picked)]


SMALL = probe.ProbeConfig(simulations=40, k=12, top_n=10, bootstrap=200)


def test_known_responsiveness_is_measured_exactly() -> None:
    result = probe.run_probe(ShareRecommender(dislike_aware=True), CATALOG, SMALL, LABELS)
    assert result.creator == pytest.approx(-0.8)
    assert result.cluster == pytest.approx(-0.625)
    assert result.share_creator_long_dwell == pytest.approx(0.5)
    assert result.share_creator_dislike == pytest.approx(0.1)
    assert result.share_cluster_long_dwell == pytest.approx(0.8)
    assert result.share_cluster_dislike == pytest.approx(0.3)
    # Every simulation responds identically, so the bootstrap interval is a point.
    assert result.ci95_creator == pytest.approx((-0.8, -0.8))
    assert result.ci95_cluster == pytest.approx((-0.625, -0.625))
    assert result.simulations == 40


def test_trajectory_cluster_share_counts_the_items_before_the_anchor() -> None:
    def item(j: int) -> HistoryItem:
        return HistoryItem(
            f"i{j}", CATALOG.creator_ids[j], CATALOG.cluster_ids[j], False, 5, 0, 0.0
        )

    # anchor i2 (cluster k0) after i0, i1 (k0) and i200 (k1): 2/3; anchor i3 after i300: 0
    prefixes = [(item(0), item(1), item(200)), (item(300),)]
    branches = probe.counterfactual_branches(prefixes, ["i2", "i3"], CATALOG, LABELS)
    assert probe.trajectory_cluster_share(branches, CATALOG) == pytest.approx(1 / 3)
    # every probe reports it
    result = probe.run_probe(ShareRecommender(dislike_aware=True), CATALOG, SMALL, LABELS)
    assert 0.0 < result.trajectory_cluster_share <= 1.0


def test_a_recommender_blind_to_dislikes_has_zero_responsiveness() -> None:
    result = probe.run_probe(ShareRecommender(dislike_aware=False), CATALOG, SMALL, LABELS)
    assert (result.cluster, result.creator) == (0.0, 0.0)
    assert result.ci95_cluster == (0.0, 0.0) and result.ci95_creator == (0.0, 0.0)


def test_trajectories_are_batched_one_call_per_step() -> None:
    rec = ShareRecommender(dislike_aware=True)
    probe.run_probe(rec, CATALOG, SMALL, LABELS)
    assert rec.calls == SMALL.k  # k - 1 trajectory steps + one call for both branches


def test_trajectories_consume_recommended_items() -> None:
    rec = ShareRecommender(dislike_aware=True)
    rng = np.random.default_rng(0)
    prefixes, anchors = probe.random_trajectories(rec, CATALOG, SMALL, LABELS, rng)
    assert len(prefixes) == len(anchors) == 40
    for prefix, anchor in zip(prefixes, anchors, strict=True):
        assert len(prefix) == SMALL.k - 1
        assert not any(h.disliked for h in prefix)
        for t in range(1, len(prefix)):
            assert (
                prefix[t].item_id
                in rec.top_k([prefix[:t]], SMALL.choose_from, exclude_seen=True)[0]
            )
        assert anchor in rec.top_k([prefix], SMALL.choose_from, exclude_seen=True)[0]


def test_branches_differ_only_in_the_dislike_flag() -> None:
    rng = np.random.default_rng(1)
    prefixes, anchors = probe.random_trajectories(
        ShareRecommender(True), CATALOG, SMALL, LABELS, rng
    )  # fmt: skip
    branches = probe.counterfactual_branches(prefixes, anchors, CATALOG, LABELS)
    for prefix, plain, disliked, anchor in zip(
        prefixes, branches.long_dwell, branches.dislike, anchors, strict=True
    ):
        assert plain[:-1] == disliked[:-1] == prefix
        assert plain[-1].item_id == disliked[-1].item_id == anchor
        assert (plain[-1].disliked, disliked[-1].disliked) == (False, True)
        assert plain[-1].dwell_bucket == disliked[-1].dwell_bucket == 5  # a full watch
        assert plain[-1].gap_bucket == disliked[-1].gap_bucket


def test_measure_is_a_pure_function_of_branches_and_recommender() -> None:
    prefixes = [(), ()]
    branches = probe.counterfactual_branches(prefixes, ["i0", "i200"], CATALOG, LABELS)
    rec = ShareRecommender(True)
    first = probe.measure_responsiveness(branches, rec, CATALOG, 10, np.random.default_rng(5), 100)
    second = probe.measure_responsiveness(branches, rec, CATALOG, 10, np.random.default_rng(5), 100)
    assert first == second
    assert first.creator == pytest.approx(-0.8)


def test_zero_baseline_share_gives_nan_not_a_crash() -> None:
    class Elsewhere:
        def top_k(
            self, histories: Sequence[Sequence[HistoryItem]], k: int, exclude_seen: bool = False
        ) -> list[list[str]]:
            return [["i539"] * k if h[-1].cluster_id == "k0" else ["i0"] * k for h in histories]

    branches = probe.counterfactual_branches([()], ["i0"], CATALOG, LABELS)
    result = probe.measure_responsiveness(
        branches, Elsewhere(), CATALOG, 5, np.random.default_rng(0)
    )
    assert math.isnan(result.cluster) and math.isnan(result.creator)


def test_bad_probe_config_is_refused() -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        probe.ProbeConfig(simulations=0)
