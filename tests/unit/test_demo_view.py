"""What ``recoil demo`` prints: one line per version, the A/B line, the final summary."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from recoil.commands import _demo_view as demo_view


def _probe(arm: str, version: int, cluster: float, at: float) -> dict[str, Any]:
    return {
        "arm": arm, "model_version": version, "cluster": cluster, "creator": cluster / 2,
        "ci95_cluster": [cluster - 0.1, cluster + 0.1], "ci95_creator": [-0.5, 0.5],
        "dislike_rate": 0.02, "repeat_dislike_creator_rate": None, "impressions": 10,
        "probed_at": at,
    }  # fmt: skip


SUMMARY = [
    {"arm": "feature_and_labels", "users": 26, "impressions": 1000,
     "rates": {"dislike": [0.02, [0.015, 0.025]], "repeat_dislike": [0.002, [0.001, 0.003]],
               "engagement": [0.4, [0.35, 0.45]]},
     "changes": {"dislike": [-0.2, [-0.4, 0.05]], "repeat_dislike": [-0.5, [-0.8, 0.1]],
                 "engagement": [0.01, [-0.1, 0.1]]},
     "changes_cuped": {"dislike": {"change": -0.25, "ci95": [-0.4, -0.1], "theta": 0.6,
                                   "covariate_change": 0.02, "covariate_ci95": [-0.2, 0.3]}}},
    {"arm": "no_signal", "users": 24, "impressions": 900,
     "rates": {"dislike": [0.025, [0.02, 0.03]], "repeat_dislike": [0.004, [0.002, 0.006]],
               "engagement": [0.39, [0.33, 0.44]]},
     "changes": {}},
]  # fmt: skip


def test_mean_interval_is_a_t_interval_over_versions() -> None:
    mean, (low, high) = demo_view.mean_interval([-0.2, -0.3, -0.1, math.nan])
    assert mean == pytest.approx(-0.2)
    assert (low, high) == pytest.approx((-0.2 - 4.30 * 0.1 / math.sqrt(3), -0.2 + 0.43 / 3**0.5))
    assert math.isnan(demo_view.mean_interval([-0.2])[1][0])
    assert math.isnan(demo_view.mean_interval([])[0])


def test_version_line_says_how_far_a_version_is_from_the_earlier_ones() -> None:
    earlier = [_probe("feature_and_labels", v, c, v) for v, c in ((1, -0.2), (2, -0.3), (3, -0.1))]
    line = demo_view.version_line(_probe("feature_and_labels", 4, -0.4, 4), earlier, 95.0)
    assert line.startswith("[   95s] feature_and_labels v4: cluster -40.0% [-50.0%, -30.0%] z=-2.0")
    first = demo_view.version_line(_probe("no_signal", 1, 0.0, 1), [], 10.0)
    assert first.endswith("(z after 3 versions)") and "z=" not in first


def test_ab_line_and_summary_carry_every_arm_and_the_changes() -> None:
    line = demo_view.ab_line(SUMMARY, 60.0)
    assert line == (
        "[   60s] A/B: feature_and_labels 1000 impr, dislike 2.00%; no_signal 900 impr, "
        "dislike 2.50%; dislike change -20.0% [-40.0%, +5.0%], CUPED -25.0% [-40.0%, -10.0%]"
    )
    results = [_probe("feature_and_labels", 1, -0.2, 1), _probe("feature_and_labels", 2, -0.4, 2)]
    text = demo_view.summary_text(results, SUMMARY, baseline="no_signal")
    assert "| feature_and_labels | 26 | 1000 | 2 | -30.0% [" in text
    assert "| no_signal | 24 | 900 | 0 | — [—, —]" in text
    assert "- feature_and_labels: dislike rate -20.0% [-40.0%, +5.0%]" in text
    assert "- feature_and_labels: repeat-dislike rate -50.0% [-80.0%, +10.0%]" in text
    assert "A/B changes against no_signal" in text
    assert (
        "- feature_and_labels: dislike rate -25.0% [-40.0%, -10.0%] (theta 0.60; covariate "
        "+2.0% [-20.0%, +30.0%])" in text
    )
    older = [{k: v for k, v in s.items() if k != "changes_cuped"} for s in SUMMARY]
    assert "CUPED" not in demo_view.summary_text(results, older, baseline="no_signal")


def test_plot_writes_a_png(tmp_path: Path) -> None:
    results = [_probe("feature_and_labels", v, -0.1 * v, v) for v in (1, 2, 3)]
    demo_view.plot(results, SUMMARY, tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
