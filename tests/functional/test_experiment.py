"""`recoil experiment --world tiny` end to end: real world, real Lightning training, real probe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from learner.offline import OFFLINE_DISLIKE_WEIGHT
from learner.vocab import FIRST_INDEX
from recoil.cli import main

ARM_KEYS = {
    "responsiveness_cluster", "responsiveness_creator", "ci95_cluster", "ci95_creator",
    "mass_responsiveness_cluster", "mass_responsiveness_creator",
    "dislike_rate", "repeat_dislike_creator_rate", "recall_at_k", "ndcg_at_k",
    "hr_at_10", "hr_at_10_dislikes", "hr_at_10_dislike_creator",
}  # fmt: skip
ARMS = [
    "no_signal",
    "feature_only",
    "exclude_heuristic",
    "feature_and_labels",
    "feature_labels_skips",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("experiment")
    argv = ["experiment", "--world", "tiny", "--out", str(out), "--simulations", "200", "--k", "20"]
    assert main([*argv, "--seed", "3", "--workers", "2", "--no-progress"]) == 0
    return out


def test_writes_the_ablation_in_the_issue_schema(run: Path) -> None:
    ablation = json.loads((run / "ablation.json").read_text())
    assert set(ablation) == {"arms", "config"}
    assert list(ablation["arms"]) == ARMS
    for arm, result in ablation["arms"].items():
        assert set(result) == ARM_KEYS, arm
        for kind in ("cluster", "creator"):
            lo, hi = result[f"ci95_{kind}"]
            assert lo <= result[f"responsiveness_{kind}"] <= hi
        assert 0.0 <= result["repeat_dislike_creator_rate"] <= result["dislike_rate"] <= 1.0
        assert 0.0 <= result["ndcg_at_k"] <= 1.0 and 0.0 < result["recall_at_k"] <= 1.0
        # a disliked item in the top 10 puts its creator there too
        assert 0.0 <= result["hr_at_10_dislikes"] <= result["hr_at_10_dislike_creator"] <= 1.0
        assert 0.0 < result["hr_at_10"] <= 1.0


def test_no_signal_cannot_tell_the_branches_apart(run: Path) -> None:
    # The arm zeroes the dislike flag, so both branches encode identically: exactly 0.
    no_signal = json.loads((run / "ablation.json").read_text())["arms"]["no_signal"]
    assert no_signal["responsiveness_cluster"] == 0.0 == no_signal["responsiveness_creator"]
    assert no_signal["ci95_cluster"] == [0.0, 0.0] == no_signal["ci95_creator"]
    # the same in probability mass: identical inputs give identical softmaxes
    assert no_signal["mass_responsiveness_cluster"] == 0.0
    assert no_signal["mass_responsiveness_creator"] == 0.0


def test_config_records_the_world_and_its_statistics(run: Path) -> None:
    config = json.loads((run / "ablation.json").read_text())["config"]
    assert config["world"]["name"] == "tiny" and config["world"]["seed"] == 3
    assert config["probe"]["simulations"] == 200 and config["probe"]["k"] == 20
    stats = config["world_stats"]
    assert stats["impressions"] == 60 * 60
    assert 0.005 <= stats["dislike_rate"] <= 0.05
    assert 0.20 <= stats["skip_rate"] <= 0.50
    # the world's own effect of a dislike, next to the logs' comparison, and in the report
    effect = stats["dislike_effect"]
    assert effect["creator"] < 0 and effect["branched"] > 0
    assert "The world's own effect of a dislike" in (run / "ablation.md").read_text()
    assert config["train"]["max_steps"] == 60
    # the model as trained, one table size for every arm: the tiny world's 180 items at
    # most (plus the reserved rows), not the starting config's 3 item rows
    assert 3 < config["model"]["num_items"] <= 180 + FIRST_INDEX


def test_markdown_plot_and_details(run: Path) -> None:
    table = (run / "ablation.md").read_text()
    assert all(f"| {arm} |" in table for arm in ARMS)
    assert (run / "responsiveness.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    details = json.loads((run / "details.json").read_text())
    assert "vs_no_signal" in details["feature_and_labels"]
    assert details["no_signal"]["closed_loop"]["impressions"] == 60 * 20
    # every arm but the lowest against the lowest dislike rate, paired by user
    rates = {arm: details[arm]["closed_loop"]["dislike_rate"] for arm in ARMS}
    lowest = min(rates, key=rates.__getitem__)
    for arm in ARMS:
        versus = details[arm].get("dislike_rate_vs_lowest")
        assert (versus is None) == (arm == lowest)
        if versus is not None:
            assert versus["arm"] == lowest
            assert versus["change"] == pytest.approx(rates[arm] / rates[lowest] - 1)
            assert versus["ci95"][0] <= versus["change"] <= versus["ci95"][1]
    assert f"against the lowest arm's ({lowest}," in table
    # the push's a per age, as trained: one per history item the model reads
    max_len = json.loads((run / "ablation.json").read_text())["config"]["model"]["max_len"]
    push = details["feature_and_labels"]["training"]["push_weights"]
    assert len(push) == max_len and all(isinstance(a, float) for a in push)
    # the items' dislike shares: counted by the arms that take not-to-recommend labels
    assert details["feature_and_labels"]["training"]["item_offsets"]["items_labelled"] > 0
    assert details["feature_labels_skips"]["training"]["item_offsets"]["dislike_share"] > 0
    assert details["feature_only"]["training"]["item_offsets"] == {}


def rerun(out: Path, arms: str, *flags: str) -> dict[str, Any]:
    """The fixture's world and seed again for ``arms``, with ``flags``; its ablation.json."""
    argv = ["experiment", "--world", "tiny", "--out", str(out), "--simulations", "200"]
    argv += ["--k", "20", "--seed", "3", "--arms", arms, "--no-progress"]
    assert main([*argv, *flags]) == 0
    result: dict[str, Any] = json.loads((out / "ablation.json").read_text())
    return result


def test_one_process_gives_the_same_results_as_workers(run: Path, tmp_path: Path) -> None:
    arms = "feature_only,feature_and_labels"
    sequential = rerun(tmp_path, arms, "--workers", "1")["arms"]
    parallel = json.loads((run / "ablation.json").read_text())["arms"]
    assert sequential == {arm: parallel[arm] for arm in arms.split(",")}


def test_the_weight_average_is_an_option_and_recorded(run: Path, tmp_path: Path) -> None:
    """Off by default (the fixture's run), on with --weight-average: the same arm, world
    and seed then measure differently, and the decay is in the recorded config."""
    averaged = rerun(tmp_path, "no_signal", "--weight-average", "0.9")
    plain = json.loads((run / "ablation.json").read_text())
    assert plain["config"]["train"]["weight_average_decay"] == 0.0
    assert averaged["config"]["train"]["weight_average_decay"] == 0.9
    assert averaged["arms"]["no_signal"] != plain["arms"]["no_signal"]


def test_a_label_setting_reaches_training_and_is_recorded(run: Path, tmp_path: Path) -> None:
    """``--label dislike_weight=20``: the labelled arm, world and seed of the fixture's run
    then measure differently, and the weight is in the recorded config."""
    weighted = rerun(tmp_path, "feature_and_labels", "--label", "dislike_weight=20")
    plain = json.loads((run / "ablation.json").read_text())
    default = plain["config"]["labels"]["dislike_weight"]
    assert default == OFFLINE_DISLIKE_WEIGHT == 50.0  # the ablation's default
    assert plain["config"]["model"]["negative_label_learning"] == "all"
    assert weighted["config"]["labels"]["dislike_weight"] == 20.0
    assert weighted["arms"]["feature_and_labels"] != plain["arms"]["feature_and_labels"]


def test_a_stage_on_the_heuristic_is_an_option_and_recorded(run: Path, tmp_path: Path) -> None:
    """``--stage``: feature_and_labels trains on exclude_heuristic's weights (trained for
    it, though not among --arms); off by default (the fixture's run, from scratch)."""
    staged = rerun(tmp_path, "feature_and_labels", "--stage", "--workers", "2")
    plain = json.loads((run / "ablation.json").read_text())
    assert plain["config"]["stage_on_heuristic"] is False
    assert staged["config"]["stage_on_heuristic"] is True
    assert list(staged["arms"]) == ["feature_and_labels"]
    details = json.loads((tmp_path / "details.json").read_text())
    assert details["feature_and_labels"]["training"]["stage_on"] == "exclude_heuristic"
    plain_details = json.loads((run / "details.json").read_text())
    assert plain_details["feature_and_labels"]["training"]["stage_on"] is None
    assert staged["arms"]["feature_and_labels"] != plain["arms"]["feature_and_labels"]


def test_bad_arguments_fail_at_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["experiment", "--out", str(tmp_path), "--arms", "no_signal,bogus"])
    assert exit_info.value.code == 2
    assert "unknown ['bogus']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["experiment", "--out", str(tmp_path), "--simulations", "0"])
    with pytest.raises(SystemExit):
        main(["experiment", "--out", str(tmp_path), "--weight-average", "1"])
    assert "--weight-average must be in [0, 1) (0: off), got 1.0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["experiment", "--out", str(tmp_path), "--stage", "--model", "flagged_input=embed"])
    assert "needs flagged_input 'drop' or 'gated'" in capsys.readouterr().err


def test_served_logging_runs_and_is_recorded(tmp_path: Path) -> None:
    argv = ["experiment", "--world", "tiny", "--out", str(tmp_path), "--simulations", "50"]
    argv += ["--k", "10", "--arms", "no_signal,feature_and_labels", "--logging", "served"]
    assert main([*argv, "--no-progress"]) == 0
    config = json.loads((tmp_path / "ablation.json").read_text())["config"]
    assert config["served_logging"]["serving_arm"] == "no_signal"
    assert config["served_logging"]["bootstrap_steps"] == 20
    assert config["world_stats"]["impressions"] == 60 * 60


def test_responsiveness_is_the_ratio_of_the_branch_shares(run: Path) -> None:
    """What the maths fixes exactly, arm by arm: the reported responsiveness is the mean
    share after a dislike over the mean share after a long dwell, minus 1, and the
    summary carries the probe's own numbers."""
    arms = json.loads((run / "ablation.json").read_text())["arms"]
    details = json.loads((run / "details.json").read_text())
    for arm in ARMS:
        probe = details[arm]["probe"]
        assert probe["simulations"] == 200, arm
        for kind in ("cluster", "creator"):
            base, disliked = probe[f"share_{kind}_long_dwell"], probe[f"share_{kind}_dislike"]
            assert base > 0, f"{arm}: no {kind} share after a long dwell"
            assert probe[kind] == pytest.approx(disliked / base - 1.0, rel=1e-9, abs=1e-12)
            assert arms[arm][f"responsiveness_{kind}"] == probe[kind]
            assert arms[arm][f"ci95_{kind}"] == list(probe[f"ci95_{kind}"])
    no_signal = details["no_signal"]["probe"]
    assert no_signal["share_creator_dislike"] == no_signal["share_creator_long_dwell"]
    assert no_signal["share_cluster_dislike"] == no_signal["share_cluster_long_dwell"]
