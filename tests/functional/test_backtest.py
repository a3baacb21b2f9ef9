"""`recoil backtest` on a slice of the real KuaiRand file, with real Lightning training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from learner.offline import OFFLINE_DISLIKE_WEIGHT
from recoil.cli import main

KUAIRAND = Path(__file__).parents[2].parent / "shared" / "data" / "kuairand_k15_likes_hates.tsv"


@pytest.fixture(scope="module")
def sliced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All rows of the file's first 30 users (in order of first appearance)."""
    lines = KUAIRAND.read_text().splitlines()
    users: set[str] = set()
    keep = [lines[0]]
    for line in lines[1:]:
        user = line.split("\t", 1)[0]
        if user not in users and len(users) < 30:
            users.add(user)
        if user in users:
            keep.append(line)
    path = tmp_path_factory.mktemp("data") / "slice.tsv"
    path.write_text("\n".join(keep) + "\n")
    return path


def test_backtest_on_a_kuairand_slice(sliced: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    argv = ["backtest", str(sliced), "--out", str(tmp_path), "--max-steps", "40", "--no-progress"]
    assert main([*argv, "--arms", "no_signal,feature_and_labels", "--holdout", "5"]) == 0
    result = json.loads((tmp_path / "backtest.json").read_text())
    assert list(result["arms"]) == ["no_signal", "feature_and_labels"]
    for metrics in result["arms"].values():
        for key in ("hr_at_10", "ndcg_at_10", "hr_at_10_dislikes"):
            assert 0.0 <= metrics[key] <= 1.0
        assert metrics["ndcg_at_10"] <= metrics["hr_at_10"]
    config = result["config"]
    assert config["test_dislikes"] > 0  # these users do dislike in their last events
    assert config["users"] == 30 and config["holdout_events"] == 5
    assert config["test_positives"] + config["test_dislikes"] == 30 * 5
    assert config["train"]["max_steps"] == 40
    assert config["train"]["weight_average_decay"] == 0.99  # checks score the average
    assert (tmp_path / "backtest.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "backtest_loss.png").read_bytes()[:4] == b"\x89PNG"
    assert "| feature_and_labels |" in (tmp_path / "backtest.md").read_text()
    # training was sized by validation: ~10 checks (every 40 // 10 = 4 steps), the kept
    # step one of them
    training = result["arms"]["feature_and_labels"]["training"]
    assert config["train"]["validation_examples"] == 3
    checks = [step for step, _ in training["validation_mrr"]]
    assert checks and all(step % 4 == 0 for step in checks) and checks[-1] <= 40
    assert training["best_step"] in checks
    assert training["validation_examples"] > 0 and training["steps"] <= 40
    # the table sizes are the trained vocabulary's, not the starting config's 3 rows
    assert config["model"]["num_items"] > 100
    # a log's labels weigh 50 and move the item rows too (the live defaults: 1, the state)
    assert config["labels"]["dislike_weight"] == OFFLINE_DISLIKE_WEIGHT == 50.0
    assert config["model"]["negative_label_learning"] == "all"
    # the labelled arm ranks with the items' dislike shares, which no_signal never counts
    offsets = training["item_offsets"]
    assert offsets["items_labelled"] > 0 and 0 < offsets["dislike_share"] < 1
    assert offsets["offset_quantiles"]["min"] < 0 < offsets["offset_quantiles"]["max"]
    lowered = offsets["most_lowered"]
    assert lowered and all(dislikes > 0 and offset < 0 for _, _, dislikes, offset in lowered)
    assert [row[3] for row in lowered] == sorted(row[3] for row in lowered)
    assert "item_offsets" not in result["arms"]["no_signal"]["training"]


def test_learned_arms_are_compared_with_the_heuristic_and_validation_can_be_off(
    sliced: Path, tmp_path: Path
) -> None:
    torch.set_num_threads(1)
    arms = "no_signal,exclude_heuristic,feature_and_labels"
    argv = ["backtest", str(sliced), "--out", str(tmp_path), "--max-steps", "20", "--no-progress"]
    flags = ["--holdout", "5", "--validation", "0", "--weight-average", "0"]
    labels = ["--label", "dislike_weight=5", "--label", "skip-weight=0"]
    model = ["--model", "dislike_push_init=-0.2,dislike_rate_rows=8"]
    assert main([*argv, "--arms", arms, *flags, *labels, *model]) == 0
    result = json.loads((tmp_path / "backtest.json").read_text())
    assert result["config"]["train"]["weight_average_decay"] == 0.0
    assert result["config"]["labels"]["dislike_weight"] == 5.0
    assert result["config"]["labels"]["skip_weight"] == 0.0
    # --model changes the backtest's own model, not the live default's
    assert result["config"]["model"]["dislike_push_init"] == -0.2
    assert result["config"]["model"]["negative_label_learning"] == "all"
    # the user's dislike rate (asked for) is read by the arms that see the flag, only them
    # (an arm that hides it would learn row 0 alone: a second bias, not a dislike rate)
    assert result["config"]["model"]["dislike_rate_rows"] == {
        "no_signal": 0, "exclude_heuristic": 0, "feature_and_labels": 8,
    }  # fmt: skip
    learned = result["arms"]["feature_and_labels"]
    assert learned["training"]["steps"] == 20 and learned["training"]["best_step"] is None
    assert learned["training"]["validation_mrr"] == []
    for versus in ("vs_no_signal", "vs_exclude_heuristic"):
        change = learned[versus]
        for key in ("hr_at_10", "hr_at_10_dislikes", "hr_at_10_dislike_creator"):
            assert key in change and len(change[f"{key}_ci95"]) == 2
    assert "vs_exclude_heuristic" not in result["arms"]["exclude_heuristic"]
    # without a creator column each item is its own creator: creator hits = item hits
    assert learned["hr_at_10_dislike_creator"] == learned["hr_at_10_dislikes"]


def test_a_table_without_mapping_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["backtest", str(path), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "give a column mapping" in capsys.readouterr().err


def test_a_dump_without_a_header_or_in_json_lines_backtests_as_its_table(
    sliced: Path, tmp_path: Path
) -> None:
    """The slice's likes and hates as MovieLens 1M writes ratings (``::``, no header) and
    as a JSON Lines review dump: each, mapped, backtests to the TSV's figures."""
    torch.set_num_threads(1)
    header, *rows = [line.split("\t") for line in sliced.read_text().splitlines()]
    at = [header.index(name) for name in ("user_id", "video_id", "time_ms", "label")]
    picked = [[row[i] for i in at] for row in rows]
    dat, jsonl = tmp_path / "ratings.dat", tmp_path / "reviews.jsonl"
    dat.write_text("".join("::".join(row) + "\n" for row in picked))
    dump = [
        {"uid": int(u), "vid": v, "ms": int(t), "like": label == "1", "hate": label == "0",
         "extra": {"ignored": [1]}}
        for u, v, t, label in picked
    ]  # fmt: skip
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in dump))
    runs = {
        sliced: "user_id=user_id,item_id=video_id,timestamp=time_ms,label=label,time_unit=ms",
        dat: "header=no,user_id=1,item_id=2,timestamp=3,label=4,time_unit=ms",
        jsonl: "user_id=uid,item_id=vid,timestamp=ms,liked=like,disliked=hate,time_unit=ms",
    }
    base = ["--max-steps", "20", "--no-progress", "--holdout", "5", "--arms", "no_signal"]
    figures = []
    for n, (path, mapping) in enumerate(runs.items()):
        out = tmp_path / f"out{n}"
        assert main(["backtest", str(path), "--map", mapping, "--out", str(out), *base]) == 0
        result = json.loads((out / "backtest.json").read_text())
        arm = result["arms"]["no_signal"]
        keys = ("hr_at_10", "ndcg_at_10", "hr_at_10_dislikes", "hr_at_100")
        counts = (result["config"]["test_positives"], result["config"]["test_dislikes"])
        figures.append((counts, [arm[key] for key in keys], arm["training"]["loss_curve"]))
    assert figures[0][0][0] > 0 and figures[0][0][1] > 0
    assert figures[1] == figures[0]
    assert figures[2] == figures[0]


def test_several_seeds_are_averaged_per_case_and_each_is_reported(
    sliced: Path, tmp_path: Path
) -> None:
    """``--seeds 2`` trains each arm with seeds 3 and 4: its HR is their mean, and each
    seed's figures are those of a run with that seed alone."""
    torch.set_num_threads(1)
    base = ["backtest", str(sliced), "--max-steps", "20", "--no-progress", "--holdout", "5"]
    arms = ["--arms", "no_signal,feature_and_labels", "--workers", "2"]
    both, alone = tmp_path / "both", tmp_path / "alone"
    assert main([*base, *arms, "--out", str(both), "--seed", "3", "--seeds", "2"]) == 0
    assert main([*base, *arms, "--out", str(alone), "--seed", "4"]) == 0
    result = json.loads((both / "backtest.json").read_text())
    single = json.loads((alone / "backtest.json").read_text())
    assert result["config"]["seeds"] == [3, 4] and single["config"]["seeds"] == [4]
    for arm, metrics in result["arms"].items():
        rows = metrics["by_seed"]
        assert [row["seed"] for row in rows] == [3, 4]
        for key in ("hr_at_10", "hr_at_10_dislikes", "hr_at_10_dislike_creator"):
            assert metrics[key] == pytest.approx((rows[0][key] + rows[1][key]) / 2)
            assert rows[1][key] == single["arms"][arm][key]
            spread = metrics["spread"][key]
            assert spread["min"] == min(r[key] for r in rows)
            assert spread["max"] == max(r[key] for r in rows)
        assert "by_seed" not in single["arms"][arm]
    assert "| feature_and_labels | 4 |" in (both / "backtest.md").read_text()


def test_an_arm_that_would_train_as_another_is_its_run(sliced: Path, tmp_path: Path) -> None:
    """Read without its dwell column the slice has likes and dislikes and no skip, so
    feature_labels_skips keeps feature_and_labels' examples: it is trained once and
    reported under both names, with the figures a run of its own gives."""
    torch.set_num_threads(1)
    ratings = "user_id=user_id,item_id=video_id,timestamp=time_ms,label=label,time_unit=ms"
    base = ["backtest", str(sliced), "--max-steps", "20", "--no-progress", "--holdout", "5"]
    base += ["--map", ratings, "--workers", "1"]
    both, alone = tmp_path / "both", tmp_path / "alone"
    assert (
        main([*base, "--arms", "feature_and_labels,feature_labels_skips", "--out", str(both)]) == 0
    )
    assert main([*base, "--arms", "feature_labels_skips", "--out", str(alone)]) == 0
    result = json.loads((both / "backtest.json").read_text())
    single = json.loads((alone / "backtest.json").read_text())
    copied, own = result["arms"]["feature_labels_skips"], single["arms"]["feature_labels_skips"]
    assert copied["trained_as"] == "feature_and_labels" and "trained_as" not in own
    assert "trained_as" not in result["arms"]["feature_and_labels"]
    for key in ("hr_at_10", "hr_at_10_dislikes", "hr_at_10_dislike_creator", "hr_at_100"):
        assert copied[key] == own[key] == result["arms"]["feature_and_labels"][key]
    assert copied["training"]["train_examples"] == own["training"]["train_examples"]
    assert "arm_feature_labels_skips" not in result["config"]["seconds"]  # not trained twice
    assert "feature_labels_skips is feature_and_labels's run" in (both / "backtest.md").read_text()


def test_labelled_arms_train_as_a_stage_on_the_heuristic(
    sliced: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """By default feature_and_labels starts from exclude_heuristic's kept weights of the
    same seed, trained for it even when the heuristic is not reported; --no-stage
    trains it from scratch; a model the heuristic is no special case of is refused."""
    torch.set_num_threads(1)
    base = ["backtest", str(sliced), "--max-steps", "20", "--no-progress", "--holdout", "5"]
    base += ["--workers", "1", "--arms", "no_signal,feature_and_labels"]
    staged, scratch = tmp_path / "staged", tmp_path / "scratch"
    assert main([*base, "--out", str(staged)]) == 0
    assert main([*base, "--no-stage", "--out", str(scratch)]) == 0
    result = json.loads((staged / "backtest.json").read_text())
    other = json.loads((scratch / "backtest.json").read_text())
    assert list(result["arms"]) == ["no_signal", "feature_and_labels"]
    assert result["arms"]["feature_and_labels"]["stage_on"] == "exclude_heuristic"
    assert "stage_on" not in result["arms"]["no_signal"]
    push = result["arms"]["feature_and_labels"]["training"]["push_weights"]
    assert len(push) == result["config"]["model"]["max_len"]  # a per age, for the reader
    assert "arm_exclude_heuristic" in result["config"]["seconds"]  # trained, not reported
    assert "trained as a stage on exclude_heuristic" in (staged / "backtest.md").read_text()
    assert "stage_on" not in other["arms"]["feature_and_labels"]
    assert "arm_exclude_heuristic" not in other["config"]["seconds"]
    for key in ("hr_at_10", "hr_at_10_dislikes", "hr_at_100"):  # the same training
        assert other["arms"]["no_signal"][key] == result["arms"]["no_signal"][key]
    with pytest.raises(SystemExit) as exit_info:
        main([*base, "--model", "flagged_input=embed", "--out", str(tmp_path / "embed")])
    assert exit_info.value.code == 2
    assert "--no-stage" in capsys.readouterr().err
