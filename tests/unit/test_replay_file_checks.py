"""``recoil replay`` checks its flags and reads its file before it touches Kafka.

A bad file with no broker used to report the broker's timeout (30 s later) instead of
the file's bad line; ``--partitions 0`` and ``--topic ''`` were passed on to Kafka.
Here ``ensure_topics`` (the first call that connects) is replaced by a recorder that
fails the command, so every test also says whether Kafka would have been touched.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import recoil.core.topics
from recoil.cli import main
from recoil.core.errors import ConfigError
from tests.support.cli import config_error

EVENT = {
    "event_id": "e1", "user_id": "u", "item_id": "i", "creator_id": "c", "timestamp": 1000.0,
    "surface": "home", "dwell_seconds": 3.0, "item_duration_seconds": 10.0, "liked": True,
    "disliked": False, "dismissed": False, "schema_version": 1,
}  # fmt: skip
NO_BROKER = "no broker in this test"


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []

    def ensure_topics(settings: Any, names: list[str], partitions: int = 4) -> list[str]:
        calls.append((list(names), partitions))
        raise ConfigError(NO_BROKER)

    monkeypatch.setattr(recoil.core.topics, "ensure_topics", ensure_topics)
    return calls


def _jsonl(path: Path, *lines: str) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def _replay(*args: str) -> int:
    return main(["replay", *args, "--bootstrap-servers", "127.0.0.1:1"])


def test_a_good_file_is_read_before_connecting(
    tmp_path: Path, connects: list[tuple[Any, ...]], capsys: pytest.CaptureFixture[str]
) -> None:
    log = _jsonl(tmp_path / "ok.jsonl", json.dumps(EVENT))
    with pytest.raises(SystemExit) as exit_info:
        _replay(str(log), "--topic", "t", "--partitions", "3")
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert "sorted 1 events by time" in out  # read first ...
    assert connects == [(["t"], 3)] and NO_BROKER in err  # ... then connected


@pytest.mark.parametrize("keep_order", [[], ["--keep-file-order"]])
def test_a_bad_first_row_is_reported_without_connecting(
    tmp_path: Path,
    connects: list[tuple[Any, ...]],
    capsys: pytest.CaptureFixture[str],
    keep_order: list[str],
) -> None:
    log = _jsonl(tmp_path / "bad.jsonl", '{"event_id": "x"}', json.dumps(EVENT))
    assert _replay(str(log), *keep_order) == 1
    assert f"recoil replay: {log}:1: " in capsys.readouterr().out
    assert connects == []


@pytest.mark.parametrize(
    ("name", "body", "flags", "where"),
    [
        ("deep.jsonl", "[" * 5000 + "\n", [], "deep.jsonl:1: event JSON is nested too deeply"),
        ("later.jsonl", json.dumps(EVENT) + "\n{\n", [], "later.jsonl:2: event is not JSON"),
        ("wide.csv", "user_id,item_id,timestamp\n1," + "a" * 200_000 + ",5\n",
         ["--map", "user_id=user_id"], "wide.csv:2: not CSV: field larger than field limit"),
    ],
)  # fmt: skip
def test_a_bad_file_names_file_and_line_without_connecting(
    tmp_path: Path,
    connects: list[tuple[Any, ...]],
    capsys: pytest.CaptureFixture[str],
    name: str,
    body: str,
    flags: list[str],
    where: str,
) -> None:
    log = tmp_path / name
    log.write_text(body)
    assert _replay(str(log), *flags) == 1
    assert where in capsys.readouterr().out
    assert connects == []


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--partitions", "0"], "--partitions 0: must be >= 1"),
        (["--partitions", "-1"], "--partitions -1: must be >= 1"),
        (["--topic", ""], "--topic '': must not be empty"),
        (["--topic", "a topic"], "--topic 'a topic': use 1-249 characters"),
        (["--speed", "nan"], "--speed nan: must be a finite number > 0"),
        (["--map", "label=lbl,label_like=1,label_dislike=1"], "both '1'"),
    ],
)
def test_bad_flags_are_refused_before_connecting(
    tmp_path: Path,
    connects: list[tuple[Any, ...]],
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    message: str,
) -> None:
    log = _jsonl(tmp_path / "ok.jsonl", json.dumps(EVENT))
    err = config_error(["replay", str(log), *flags, "--bootstrap-servers", "127.0.0.1:1"], capsys)
    assert err.startswith("recoil replay: configuration error: ") and message in err, err
    assert connects == []


def test_too_many_events_to_sort_is_said_before_connecting(
    tmp_path: Path, connects: list[tuple[Any, ...]], capsys: pytest.CaptureFixture[str]
) -> None:
    log = _jsonl(tmp_path / "two.jsonl", json.dumps(EVENT), json.dumps({**EVENT, "event_id": "e2"}))
    assert _replay(str(log), "--max-sort-events", "1") == 2
    assert "too many to sort" in capsys.readouterr().err
    assert connects == []
