"""Reports are valid JSON even where a metric is undefined (NaN becomes null)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace
from pathlib import Path

from learner.model import ModelConfig
from simulator.report import trained_model_json, write_backtest


def test_backtest_report_writes_null_for_undefined_metrics(tmp_path: Path) -> None:
    nan = math.nan
    result = {
        "arms": {
            "no_signal": {"hr_at_10": 0.03, "ndcg_at_10": 0.01, "hr_at_10_dislikes": 0.0},
            "feature_and_labels": {
                "hr_at_10": 0.04, "ndcg_at_10": 0.02, "hr_at_10_dislikes": nan,
                "vs_no_signal": {"hr_at_10_dislikes": nan, "hr_at_10_dislikes_ci95": (nan, nan)},
            },
        },
        "config": {
            "file": "x.tsv", "events": 10, "users": 2, "holdout_events": 1, "test_positives": 1,
            "test_dislikes": 1, "creator_note": "item", "seconds": {"total": 1.0},
        },
    }  # fmt: skip
    write_backtest(tmp_path, result)
    text = (tmp_path / "backtest.json").read_text()
    assert "NaN" not in text
    arm = json.loads(text)["arms"]["feature_and_labels"]
    assert arm["hr_at_10_dislikes"] is None
    assert arm["vs_no_signal"]["hr_at_10_dislikes_ci95"] == [None, None]
    table = (tmp_path / "backtest.md").read_text()
    assert "| feature_and_labels | 0.0400 | 0.0200 | n/a |" in table
    assert (tmp_path / "backtest.png").read_bytes()[:4] == b"\x89PNG"


def test_the_recorded_model_is_the_trained_one_per_arm_where_arms_differ() -> None:
    given = ModelConfig()  # 3 item rows: what the arms start from, not what they train
    same = replace(given, num_items=120, num_creators=40)
    assert trained_model_json({"no_signal": same, "feature_and_labels": same}) == asdict(same)
    wider = replace(same, num_items=121)
    record = trained_model_json({"no_signal": same, "feature_and_labels": wider})
    assert record == {
        **asdict(same), "num_items": {"no_signal": 120, "feature_and_labels": 121}
    }  # fmt: skip
    assert trained_model_json({}) == {}


def test_a_stage_is_named_under_the_table_and_a_push_that_ended_off_is_said(
    tmp_path: Path,
) -> None:
    def arm(push: list[float]) -> dict[str, object]:
        return {
            "hr_at_10": 0.04, "ndcg_at_10": 0.02, "hr_at_10_dislikes": 0.01,
            "stage_on": "exclude_heuristic",
            "training": {"push_weights": push, "loss_curve": [(0, 5.0), (10, 4.0)]},
        }  # fmt: skip

    config = {
        "file": "x.tsv", "events": 10, "users": 2, "holdout_events": 1, "test_positives": 1,
        "test_dislikes": 1, "creator_note": "item", "seconds": {"total": 1.0},
    }  # fmt: skip
    said = []
    for push in ([0.3, 0.0, 1.2], [0.3, -0.01, 1.2]):
        write_backtest(tmp_path, {"arms": {"feature_and_labels": arm(push)}, "config": config})
        said.append((tmp_path / "backtest.md").read_text())
    for text in said:
        assert "feature_and_labels trained as a stage on exclude_heuristic's kept weights" in text
    assert "push ended off at every age" in said[0]
    assert "scores as exclude_heuristic does" in said[0]
    assert "push ended off" not in said[1]  # one age still pushes away
    # with the items' offsets the arm still ranks otherwise than the heuristic
    offsets = arm([0.3, 0.0, 1.2])
    offsets["training"]["item_offsets"] = {"items_labelled": 3, "dislike_share": 0.2}  # type: ignore[index]
    write_backtest(tmp_path, {"arms": {"feature_and_labels": offsets}, "config": config})
    text = (tmp_path / "backtest.md").read_text()
    assert "push ended off at every age" in text
    assert "differs from exclude_heuristic by the items' own dislike shares alone" in text
    assert "scores as exclude_heuristic does" not in text
