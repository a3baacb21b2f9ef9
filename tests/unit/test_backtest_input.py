"""``recoil backtest`` says in one line what is wrong with its input file, before training.

An empty log, or one too short for the per-user split, ended in a traceback from
training (``arm 'no_signal' keeps none of the 0 examples``); deep JSON nesting and
oversized CSV fields escaped the reader as tracebacks.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recoil.core.events import InteractionEvent
from recoil.core.records import TrainingExample
from recoil.core.windows import events_to_examples, user_histories
from simulator.backtest import BacktestConfig, TooFewEventsError, check_enough_events
from simulator.evaluation import (
    NextItemRanking,
    mean_ranking,
    next_item_cases,
    split_last_events,
)
from simulator.logs import read_event_log
from tests.support.cli import config_error

EVENT = {
    "event_id": "e", "user_id": "u", "item_id": "i", "creator_id": "c", "timestamp": 1000.0,
    "surface": "home", "dwell_seconds": 3.0, "item_duration_seconds": 10.0, "liked": True,
    "disliked": False, "dismissed": False, "schema_version": 1,
}  # fmt: skip


def _log(path: Path, count: int, users: int = 1, **changes: object) -> Path:
    lines = [
        json.dumps({**EVENT, **changes, "event_id": f"e{n}", "user_id": f"u{n % users}",
                    "item_id": f"i{n % 4}", "timestamp": 1000.0 + n})
        for n in range(count)
    ]  # fmt: skip
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def _backtest(path: Path, out: Path, capsys: pytest.CaptureFixture[str], *flags: str) -> str:
    err = config_error(["backtest", str(path), "--out", str(out), "--no-progress", *flags], capsys)
    assert err.startswith("recoil backtest: configuration error: ") and err.count("\n") == 1, err
    assert not out.exists()  # refused before anything was trained or written
    return err


@pytest.mark.parametrize(
    ("count", "users", "found"),
    [
        (0, 1, "(no events)"),
        (1, 1, "(1 event of 1 user, at most 1 of one user)"),
        (2, 1, "(2 events of 1 user, at most 2 of one user)"),
        (20, 2, "(20 events of 2 users, at most 10 of one user)"),
    ],
)
def test_too_few_events_per_user_say_the_minimum(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], count: int, users: int, found: str
) -> None:
    log = _log(tmp_path / "short.jsonl", count, users)
    err = _backtest(log, tmp_path / "out", capsys)
    assert f"{log}: too few events for a backtest {found}" in err
    assert "at least one user needs 11 or more events" in err  # --holdout 10, plus a history


def test_the_minimum_follows_holdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _backtest(_log(tmp_path / "short.jsonl", 3), tmp_path / "out", capsys, "--holdout", "3")
    assert "each user's last 3 events" in err and "needs 4 or more events" in err


def test_nothing_to_train_on_is_said(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = _log(tmp_path / "dislikes.jsonl", 11, liked=False, disliked=True)
    err = _backtest(log, tmp_path / "out", capsys, "--arms", "no_signal")
    assert "too few labelled events for a backtest: arm 'no_signal' trains on positive" in err
    assert "need at least one like or long watch" in err


def _split(
    events_path: Path, config: BacktestConfig
) -> tuple[list[InteractionEvent], list[TrainingExample], list[InteractionEvent]]:
    events = list(read_event_log(events_path))
    train, test = split_last_events(events, config.holdout_events)
    examples = events_to_examples(train, config.labels)
    _, cases = next_item_cases(user_histories(train, config.labels), test, config.labels)
    return events, examples, cases


def test_one_user_with_holdout_plus_one_events_is_enough(tmp_path: Path) -> None:
    config = BacktestConfig(holdout_events=10)
    events, examples, cases = _split(_log(tmp_path / "ok.jsonl", 11), config)
    check_enough_events(events, examples, cases, config, "ok.jsonl")  # no error
    assert len(cases) == 10 and len(examples) == 1
    events, examples, cases = _split(_log(tmp_path / "short.jsonl", 10), config)
    with pytest.raises(TooFewEventsError, match="needs 11 or more"):
        check_enough_events(events, examples, cases, config, "short.jsonl")


@pytest.mark.parametrize(
    ("name", "body", "where"),
    [
        ("deep.jsonl", "[" * 5000 + "\n", "deep.jsonl:1: event JSON is nested too deeply"),
        ("huge.jsonl", "[" * 100_000 + "\n", "huge.jsonl:1: event is 100000 bytes"),
        ("wide.csv", "user_id,item_id,timestamp\n1," + "a" * 200_000 + ",5\n",
         "wide.csv:2: not CSV: field larger than field limit"),
        ("twice.csv", "user_id,item_id,timestamp,item_id\n1,a,5,b\n",
         "twice.csv:1: the header names columns more than once: ['item_id']"),
    ],
)  # fmt: skip
def test_a_bad_file_is_one_line_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, body: str, where: str
) -> None:
    path = tmp_path / name
    path.write_text(body)
    flags = ["--map", "user_id=user_id"] if name.endswith(".csv") else []
    assert where in _backtest(path, tmp_path / "out", capsys, *flags)


def test_a_bad_mapping_names_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,timestamp\n1,a,5\n")
    err = _backtest(path, tmp_path / "out", capsys, "--map", "timestamp=")
    assert "--map 'timestamp=': mapping entry 'timestamp=' is empty" in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--seed", "-1"], "--seed must be in 0..4294967295, got -1"),
        (["--validation", "-1"], "--validation must be >= 0, got -1"),
        (["--seeds", "101"], "--seeds must be at most 100, got 101"),
        (["--weight-average", "1"], "--weight-average must be in [0, 1) (0: off), got 1.0"),
        (["--weight-average", "nan"], "--weight-average must be in [0, 1) (0: off), got nan"),
        (["--seed", "4294967295", "--seeds", "2"], "runs past the largest seed 4294967295"),
    ],
)
def test_bad_flags_are_refused_before_reading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    err = _backtest(tmp_path / "not-read.jsonl", tmp_path / "out", capsys, *flags)
    assert message in err and "no such log file" not in err


def _ranking(hits_pos: list[float], hits_dis: list[float]) -> NextItemRanking:
    pos, dis = np.array(hits_pos), np.array(hits_dis)
    return NextItemRanking(
        hr_positive=float(pos.mean()), ndcg_positive=0.5 * float(pos.mean()),
        hr_dislike=float(dis.mean()), positives=len(pos), dislikes=len(dis),
        hits_positive=pos, hits_dislike=dis, deep_k=100, hits_positive_deep=pos,
        hits_dislike_deep=dis, hits_dislike_creator=dis,
    )  # fmt: skip


def test_seeds_are_averaged_per_test_case() -> None:
    a, b = _ranking([1, 0, 0, 1], [0, 1]), _ranking([1, 1, 0, 0], [0, 0])
    mean = mean_ranking([a, b])
    assert mean.hits_positive.tolist() == [1.0, 0.5, 0.0, 0.5]
    assert (mean.hr_positive, mean.hr_dislike, mean.hr_dislike_creator) == (0.5, 0.25, 0.25)
    assert mean.ndcg_positive == 0.25
    assert mean_ranking([a]) is a
    with pytest.raises(ValueError, match="not of the same test cases"):
        mean_ranking([a, _ranking([1], [0, 1])])
    with pytest.raises(ValueError, match="at least one"):
        mean_ranking([])


def test_seeds_must_be_one_or_more() -> None:
    with pytest.raises(ValueError, match="seeds must be >= 1, got 0"):
        BacktestConfig(seeds=0)
    assert BacktestConfig(seeds=3).training_seeds == [0, 1, 2]
