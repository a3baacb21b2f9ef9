"""A broker that cannot be reached is one line naming the bootstrap servers, not a
``KafkaTimeoutError`` traceback: from ``ensure_topics`` and from the commands that call
it first (``recoil replay``, ``recoil learn``).

kafka-python gives up bootstrapping after ``bootstrap_timeout_ms`` (30 s); the tests
shorten it to keep the real failure path fast.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from recoil.cli import main
from recoil.core.errors import ConfigError
from recoil.core.kafka_settings import KafkaSettings
from recoil.core.topics import ensure_topics

pytestmark = pytest.mark.usefixtures("quick_bootstrap")


def test_ensure_topics_names_the_servers(closed_port: int) -> None:
    servers = f"127.0.0.1:{closed_port}"
    with pytest.raises(ConfigError, match=rf"cannot reach a Kafka broker at {servers} "):
        ensure_topics(KafkaSettings(servers), ["t"])


def _one_event(path: Path) -> Path:
    event = {
        "event_id": "e1", "user_id": "u", "item_id": "i", "creator_id": "c",
        "timestamp": 1000.0, "surface": "home", "dwell_seconds": 3.0,
        "item_duration_seconds": 10.0, "liked": True, "disliked": False, "dismissed": False,
        "schema_version": 1,
    }  # fmt: skip
    path.write_text(json.dumps(event) + "\n")
    return path


def test_replay_reports_an_unreachable_broker_in_one_line(
    tmp_path: Path, closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    servers = f"127.0.0.1:{closed_port}"
    log = _one_event(tmp_path / "one.jsonl")
    with pytest.raises(SystemExit) as exit_info:
        main(["replay", str(log), "--bootstrap-servers", servers])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    line = f"recoil replay: configuration error: cannot reach a Kafka broker at {servers}"
    assert err.startswith(line) and err.count("\n") == 1, err
    assert "--bootstrap-servers" in err and "Traceback" not in err


def test_learn_reports_an_unreachable_broker_in_one_line(
    tmp_path: Path, closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    servers = f"127.0.0.1:{closed_port}"
    argv = ["learn", "--store", str(tmp_path / "store"), "--bootstrap-servers", servers]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    line = f"recoil learn: configuration error: cannot reach a Kafka broker at {servers}"
    assert err.startswith(line) and err.count("\n") == 1, err


def test_the_worker_exits_to_be_restarted_when_no_broker_answers(
    closed_port: int, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """A broker that comes up after its stream workers is no wrong setting: the worker logs
    one line and exits 1, which its supervisor restarts (2, a ConfigError, it gives up on)."""
    from streams.config import StreamsConfig
    from streams.worker import run_worker

    servers = f"127.0.0.1:{closed_port}"
    policy = asyncio.get_event_loop_policy()  # the worker installs uvloop's: put it back
    try:
        assert run_worker(StreamsConfig(data_dir=tmp_path), KafkaSettings(servers)) == 1
    finally:
        asyncio.set_event_loop_policy(policy)
    assert f"cannot reach a Kafka broker at {servers}" in caplog.text
    assert list(tmp_path.iterdir()) == []  # stopped before any local state
