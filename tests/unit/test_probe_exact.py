"""The probe's pieces, exactly: the config's limits, the events it makes up, and how
``measure_responsiveness`` spends its generator and resamples.

Written against the mutants mutation testing found alive (docs/testing.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import fields, replace

import numpy as np
import pytest

from recoil.core.events import InteractionEvent
from recoil.core.labels import LabelConfig
from recoil.core.records import HistoryItem
from simulator.metrics import bootstrap_relative_change
from simulator.probe import (
    PROBE_START_TIME,
    STEP_SECONDS,
    ProbeConfig,
    counterfactual_branches,
    measure_responsiveness,
    probe_event,
    random_trajectories,
    run_probe,
    trajectory_cluster_share,
)
from tests.support.catalogs import block_catalog

# 3 clusters x 2 creators x 20 items
CATALOG = block_catalog(120, per_creator=20, per_cluster=40)
LABELS = LabelConfig()
SIZES = "ProbeConfig: simulations, k, top_n and choose_from must be >= 1"
RATIO = "ProbeConfig: max_dwell_ratio must be > 0 and bootstrap >= 1"


@pytest.mark.parametrize(
    ("fields", "message"),
    [({"simulations": 0}, SIZES), ({"k": 0}, SIZES), ({"top_n": 0}, SIZES),
     ({"choose_from": 0}, SIZES), ({"max_dwell_ratio": 0.0}, RATIO),
     ({"max_dwell_ratio": -1.0}, RATIO), ({"bootstrap": 0}, RATIO)],
)  # fmt: skip
def test_config_refusals(fields: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        ProbeConfig(**fields)  # type: ignore[arg-type]


def test_smallest_valid_config() -> None:
    ProbeConfig(simulations=1, k=1, top_n=1, choose_from=1, max_dwell_ratio=0.5, bootstrap=1)


def test_probe_event_is_exactly_the_documented_event() -> None:
    # item i12: creator c0, cluster k0, duration 10 + 12 % 7 = 15 s
    event = probe_event(3, 4, "i12", CATALOG, 0.123456, disliked=True)
    assert event == InteractionEvent(
        event_id="probe3-4", user_id="probe3", item_id="i12", creator_id="c0",
        cluster_id="k0", timestamp=PROBE_START_TIME + 4 * STEP_SECONDS, surface="probe",
        dwell_seconds=1.852, item_duration_seconds=15.0,  # round(0.123456 * 15, 3)
        liked=False, disliked=True, dismissed=False,
    )  # fmt: skip
    assert (STEP_SECONDS, PROBE_START_TIME) == (30.0, 1_735_689_600.0)
    assert probe_event(0, 0, "i0", CATALOG, 1.0, disliked=False).disliked is False


def test_branches_need_one_anchor_per_prefix() -> None:
    with pytest.raises(ValueError, match=r"^2 prefixes for 1 anchors$"):
        counterfactual_branches([(), ()], ["i0"], CATALOG, LABELS)


class VaryingRecommender:
    """Top 10 with a per-anchor number of same-creator items (so shares vary and the
    bootstrap interval is not a point); records how it was asked."""

    def __init__(self) -> None:
        self.exclude_seen: list[bool] = []

    def top_k(
        self, histories: Sequence[Sequence[HistoryItem]], k: int, exclude_seen: bool = False
    ) -> list[list[str]]:
        self.exclude_seen.append(exclude_seen)
        out = []
        for history in histories:
            last = history[-1]
            j = CATALOG.index(last.item_id)
            same = (j % 4) + (0 if last.disliked else 3)  # 0..6 of 10
            mine = [i for i in CATALOG.item_ids if CATALOG.creator_of(i) == last.creator_id]
            others = [i for i in CATALOG.item_ids if CATALOG.creator_of(i) != last.creator_id]
            out.append(mine[:same] + others[: k - same])
        return out


def test_measure_uses_its_bootstrap_count_and_generator_in_order() -> None:
    anchors = [f"i{j}" for j in range(0, 120, 3)]  # 40 simulations
    branches = counterfactual_branches([()] * len(anchors), anchors, CATALOG, LABELS)
    rec = VaryingRecommender()
    result = measure_responsiveness(branches, rec, CATALOG, 10, np.random.default_rng(4), 200)
    assert rec.exclude_seen == [True]  # one call for both branches, seen items excluded
    # the same numbers by hand: shares per simulation, then the cluster interval and the
    # creator interval drawn from one generator, 200 resamples each
    recs = rec.top_k([*branches.long_dwell, *branches.dislike], 10, exclude_seen=True)
    base = CATALOG.same_share(recs[:40], anchors)
    disliked = CATALOG.same_share(recs[40:], anchors)
    rng = np.random.default_rng(4)
    assert result.ci95_cluster == bootstrap_relative_change(
        base.cluster, disliked.cluster, rng, 200
    )
    assert result.ci95_creator == bootstrap_relative_change(
        base.creator, disliked.creator, rng, 200
    )
    assert result.ci95_creator[0] < result.ci95_creator[1]  # not a point: the check means it
    # and the default is 1000 resamples
    default = measure_responsiveness(branches, rec, CATALOG, 10, np.random.default_rng(4))
    explicit = measure_responsiveness(branches, rec, CATALOG, 10, np.random.default_rng(4), 1000)
    assert default == explicit
    assert default.ci95_creator != result.ci95_creator


def test_trajectory_share_of_empty_prefixes_is_zero() -> None:
    branches = counterfactual_branches([(), ()], ["i0", "i50"], CATALOG, LABELS)
    assert trajectory_cluster_share(branches, CATALOG) == 0.0


def test_trajectories_draw_dwell_below_the_maximum_and_pick_beyond_the_top() -> None:
    # max_dwell_ratio 0.05 < the 10% skip ratio: every trajectory item is a skip
    config = ProbeConfig(simulations=30, k=8, top_n=10, choose_from=20, max_dwell_ratio=0.05)
    rec = VaryingRecommender()
    prefixes, _ = random_trajectories(rec, CATALOG, config, LABELS, np.random.default_rng(2))
    items = [h for prefix in prefixes for h in prefix]
    assert len(items) == 30 * 7
    assert all(h.dwell_bucket == 0 for h in items)
    assert all(h.disliked is False for h in items)
    # picks are uniform over the top choose_from, not always the first
    ranks = [
        rec.top_k([prefix[:t]], 20, exclude_seen=True)[0].index(prefix[t].item_id)
        for prefix in prefixes
        for t in range(1, len(prefix))
    ]
    assert min(ranks) == 0 and max(ranks) >= 15


def test_a_recommender_with_nothing_to_offer_is_named() -> None:
    class Empty:
        def top_k(
            self, histories: Sequence[Sequence[HistoryItem]], k: int, exclude_seen: bool = False
        ) -> list[list[str]]:
            return [[] for _ in histories]

    config = ProbeConfig(simulations=2, k=3)
    with pytest.raises(ValueError, match=r"^recommender returned no items for simulation 0$"):
        random_trajectories(Empty(), CATALOG, config, LABELS, np.random.default_rng(0))


def test_run_probe_is_trajectories_branches_and_measure_from_one_seeded_generator() -> None:
    config = ProbeConfig(simulations=25, k=5, top_n=10, choose_from=10, bootstrap=60, seed=7)
    result = run_probe(VaryingRecommender(), CATALOG, config, LABELS)
    rng = np.random.default_rng([7, 3])
    prefixes, anchors = random_trajectories(VaryingRecommender(), CATALOG, config, LABELS, rng)
    branches = counterfactual_branches(prefixes, anchors, CATALOG, LABELS)
    by_hand = measure_responsiveness(branches, VaryingRecommender(), CATALOG, 10, rng, 60)
    assert result == by_hand
    assert result.to_dict() == {f.name: getattr(result, f.name) for f in fields(result)}
    assert result.ci95_creator[0] < result.ci95_creator[1]
    other = run_probe(VaryingRecommender(), CATALOG, replace(config, seed=8), LABELS)
    assert other != result


def test_a_progress_bar_only_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    config = ProbeConfig(simulations=3, k=3, top_n=5, choose_from=5, bootstrap=10)
    random_trajectories(VaryingRecommender(), CATALOG, config, LABELS, np.random.default_rng(0))
    run_probe(VaryingRecommender(), CATALOG, config, LABELS)
    assert capsys.readouterr().err == ""  # library calls stay quiet by default
    run_probe(VaryingRecommender(), CATALOG, config, LABELS, progress=True)
    assert "probe trajectories: 100%" in capsys.readouterr().err
