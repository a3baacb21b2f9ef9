"""Worker configuration: defaults, validation messages that say what to fix, label overrides."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from recoil.core.errors import ConfigError
from recoil.core.labels import LabelConfig
from streams.config import StreamsConfig, describe, label_config


def test_defaults_are_valid_and_exactly_once() -> None:
    config = StreamsConfig()
    assert config.exactly_once
    assert config.history_length == 50
    assert config.app_data_dir == Path("recoil-data/streams/recoil-streams")
    assert describe(config)["labels.skip_weight"] == 0.25


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"app_id": "bad id"}, r"app_id='bad id': use 1-200 characters"),
        ({"output_topic": "interactions"}, "input, output and DLQ topics must differ"),
        ({"store": "redis"}, r"store='redis': choose one of rocksdb, memory"),
        ({"processing_guarantee": "maybe"}, "choose one of exactly_once, at_least_once"),
        ({"batch_size": 0}, r"batch_size=0: must be >= 1"),
        ({"dedupe_window": 0}, r"dedupe_window=0: must be >= 1"),
        ({"commit_interval": 0}, r"commit_interval=0: must be > 0 seconds"),
        ({"heartbeat_interval": 5.0}, "at most a third of session_timeout=10.0"),
        ({"web_port": 70000}, r"web_port=70000: must be a TCP port"),
        ({"metrics_port": 6066}, "metrics_port and web_port are both 6066"),
        ({"producer_linger": 5.0}, r"producer_linger=5.0: use 0..1 seconds"),
        ({"producer_compression": "brotli"}, "choose one of none, gzip, snappy, lz4, zstd"),
    ],
)
def test_bad_config_names_the_setting(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        StreamsConfig(**changes)  # type: ignore[arg-type]


def test_label_overrides() -> None:
    labels = label_config(7, ["skip_weight=0.5", "dismiss-is-dislike=false", "skip_ratio=0.05"])
    assert labels == LabelConfig(
        history_length=7, skip_weight=0.5, dismiss_is_dislike=False, skip_ratio=0.05
    )


@pytest.mark.parametrize(
    ("history", "overrides", "message"),
    [
        (50, ["nope=1"], "expected NAME=VALUE with NAME one of"),
        (50, ["skip_weight"], "expected NAME=VALUE"),
        (50, ["skip_weight=lots"], "expected a number"),
        (50, ["dismiss_is_dislike=perhaps"], "expected true or false"),
        (0, [], "history_length must be >= 1"),
        (50, ["skip_ratio=0.9"], "need 0 <= skip_ratio < long_dwell_ratio"),
    ],
)
def test_bad_label_settings(history: int, overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        label_config(history, overrides)


def test_worker_command_exits_with_the_reason() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "recoil", "worker", "--batch-size", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "configuration error: batch_size=0: must be >= 1" in done.stderr


def test_port_zero_means_any_free_port() -> None:
    config = StreamsConfig(web_port=0, metrics_port=0)  # valid: 0 is not a clash either
    resolved = config.with_free_ports()
    assert 0 < resolved.web_port < 65536 and resolved.metrics_port is not None
    assert 0 < resolved.metrics_port < 65536 and resolved.metrics_port != resolved.web_port
    fixed = StreamsConfig(web_port=6100, metrics_port=None)
    assert fixed.with_free_ports() == fixed
