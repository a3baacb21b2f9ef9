"""``recoil learn`` refuses every out-of-range or non-finite setting before it starts.

NaN compares false both ways, so a check written as ``x <= 0`` lets it through: a
``--batch-timeout nan`` batch never trained. Each bad flag below must end the command
with one ``configuration error`` line naming the flag, before any Kafka connection.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from learner.continuous_loop import LearnerConfig
from learner.kafka_source import SourceConfig
from recoil.cli import build_parser
from recoil.commands.learn import LearnOptions, configs_from_args
from recoil.core.errors import ConfigError
from tests.support.cli import config_error

NOT_FINITE = ["nan", "inf", "-inf"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        *[("batch_timeout_s", float(v), "batch_timeout_s must be a finite") for v in NOT_FINITE],
        ("batch_timeout_s", 0.0, "batch_timeout_s must be a finite number of seconds > 0"),
        ("idle_tick_s", float("nan"), "idle_tick_s must be a finite"),
        ("lag_refresh_s", float("inf"), "lag_refresh_s must be a finite"),
        ("rejoin_after_s", float("nan"), "rejoin_after_s must be a finite number of seconds >= 0"),
        ("rejoin_after_s", float("inf"), "rejoin_after_s must be a finite"),
        ("rejoin_after_s", -1.0, "rejoin_after_s must be a finite"),
        ("batch_size", 0, "batch_size must be >= 1, got 0"),
        ("catch_up_batch_size", -3, "catch_up_batch_size must be >= 1, got -3"),
        ("max_poll_interval_ms", 0, "max_poll_interval_ms must be >= 1"),
        ("session_timeout_ms", 0, "session_timeout_ms must be >= 1"),
        ("max_example_bytes", 0, "max_example_bytes must be >= 1"),
        ("metadata_max_age_ms", 99, "metadata_max_age_ms must be >= 100"),
        ("topic", "", "topic '': must not be empty"),
        ("topic", "a b", "topic 'a b': use 1-249 characters"),
        ("group", "", "group must not be empty"),
    ],
)
def test_source_config_refuses(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SourceConfig(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        *[("lr", float(v), "lr must be a finite number > 0") for v in NOT_FINITE],
        ("lr", -1.0, r"lr must be a finite number > 0, got -1.0"),
        ("lr", 0.0, "lr must be a finite number > 0"),
        ("dislike_lr_scale", float("inf"), "dislike_lr_scale must be a finite number > 0"),
        ("dislike_lr_scale", float("nan"), "dislike_lr_scale must be a finite number > 0"),
        ("snapshot_every_seconds", float("nan"), "snapshot_every_seconds must be a finite"),
        ("snapshot_every_seconds", float("inf"), "snapshot_every_seconds must be a finite"),
        ("log_every_s", float("nan"), "log_every_s must be a finite"),
        ("gradient_clip_val", float("nan"), "gradient_clip_val must be a finite"),
        ("gradient_clip_val", 0.0, "gradient_clip_val must be a finite"),
        ("weight_decay", float("nan"), "weight_decay must be a finite number >= 0"),
        ("weight_decay", -0.1, "weight_decay must be a finite number >= 0"),
        ("stop_when_idle_s", -5.0, r"stop_when_idle_s must be .* >= 0 .*got -5.0"),
        ("stop_when_idle_s", float("nan"), "stop_when_idle_s must be a finite"),
        ("stop_when_idle_s", float("inf"), "stop_when_idle_s must be a finite"),
        ("num_sampled", 0, "num_sampled must be >= 1"),
        ("snapshot_every_steps", 0, "snapshot_every_steps must be >= 1"),
        ("seed", -1, r"seed must be in 0\.\.4294967295, got -1"),
        ("seed", 2**32, "seed must be in"),
        ("model_updates_topic", "", "model_updates_topic '': must not be empty"),
        ("model_updates_topic", "x/y", "model_updates_topic 'x/y': use 1-249 characters"),
    ],
)
def test_learner_config_refuses(tmp_path: Path, field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LearnerConfig(store=tmp_path, checkpoint_dir=tmp_path, **{field: value})  # type: ignore[arg-type]


def test_edges_that_mean_something_are_kept(tmp_path: Path) -> None:
    config = LearnerConfig(
        store=tmp_path, checkpoint_dir=tmp_path, stop_when_idle_s=0.0, weight_decay=0.0,
        gradient_clip_val=None, seed=2**32 - 1, model_updates_topic=None,
    )  # fmt: skip
    assert (config.stop_when_idle_s, config.seed) == (0.0, 2**32 - 1)
    assert SourceConfig(rejoin_after_s=0.0, instance_id=None).rejoin_after_s == 0.0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"metrics_port": 70000}, r"metrics_port=70000: must be a TCP port in 1\.\.65535"),
        ({"metrics_port": -1}, "metrics_port=-1: must be a TCP port"),
        ({"threads": 0}, "threads=0: must be >= 1"),
        ({"metrics_host": ""}, "metrics_host must not be empty"),
    ],
)
def test_learn_options_refuse(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        LearnOptions(**changes)  # type: ignore[arg-type]


def test_a_rank_past_the_last_port_is_refused() -> None:
    options = LearnOptions(metrics_port=65535)
    assert options.rank_port(0) == 65535
    assert LearnOptions(metrics_port=0).rank_port(3) == 0  # any free port, every rank
    assert LearnOptions().rank_port(1) is None
    with pytest.raises(ConfigError, match="rank 1 would serve on 65536"):
        options.rank_port(1)


def test_the_same_topic_for_examples_and_announcements_is_refused(tmp_path: Path) -> None:
    argv = ["learn", "--store", str(tmp_path), "--model-updates-topic", "training-examples"]
    with pytest.raises(ConfigError, match="--model-updates-topic and --topic are both"):
        configs_from_args(build_parser().parse_args(argv))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--batch-timeout", "nan"], "batch_timeout_s must be a finite number of seconds > 0, "
                                     "got nan (set by --batch-timeout)"),
        (["--snapshot-every-seconds", "nan"], "(set by --snapshot-every-seconds)"),
        (["--dislike-lr-scale", "inf"], "got inf (set by --dislike-lr-scale)"),
        (["--lr", "-1"], "lr must be a finite number > 0, got -1.0 (set by --lr)"),
        (["--lr", "nan"], "got nan (set by --lr)"),
        (["--lr", "inf"], "got inf (set by --lr)"),
        (["--stop-when-idle", "-5"], "got -5.0 (set by --stop-when-idle)"),
        (["--metrics-port", "70000"], "must be a TCP port in 1..65535, or 0 for any "
                                      "(set by --metrics-port)"),
        (["--seed", "-1"], "(set by --seed)"),
        (["--topic", ""], "topic '': must not be empty (set by --topic)"),
    ],
)  # fmt: skip
def test_the_command_reports_one_line_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    # port 1: nothing listens there; the checks must fail before anything connects
    argv = ["learn", "--store", str(tmp_path / "store"), "--bootstrap-servers", "127.0.0.1:1"]
    err = config_error([*argv, *flags], capsys)
    assert err.startswith("recoil learn: configuration error: ")
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "store").exists()  # stopped before the learner made anything
