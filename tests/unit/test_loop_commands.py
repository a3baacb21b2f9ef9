"""The loop's child command lines parse back to the settings the loop chose.

recoil.loop writes them with recoil.core.settings.to_flags from the config classes,
so a renamed setting cannot leave the loop passing a flag no command knows.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from learner.continuous_loop import live_model_config
from recoil.cli import build_parser
from recoil.commands.learn import configs_from_args
from recoil.commands.simulate import live_config
from recoil.commands.worker import config_from_args
from recoil.core.kafka_settings import KafkaSettings
from recoil.core.processes import ProcessGroup
from recoil.loop import Loop, LoopConfig
from streams.supervisor import worker_command


def _loop(tmp_path: Path) -> Loop:
    config = LoopConfig(
        workdir=tmp_path,
        topic_suffix="-t",
        split="feature_and_labels=0.7,no_signal=0.3",
        switch="no_signal=feature_and_labels@60",
        seed=3,
    )
    return Loop(config, KafkaSettings("h:1"), ProcessGroup(tmp_path / "logs"))


def test_the_learner_command_gives_the_arms_learner(tmp_path: Path) -> None:
    loop = _loop(tmp_path)
    args = build_parser().parse_args(loop.learner_command("no_signal")[3:])
    config, source = configs_from_args(args)
    assert (config.arm, config.store, config.seed) == ("no_signal", loop.store("no_signal"), 3)
    assert config.checkpoint_dir == tmp_path / "checkpoints" / "no_signal"
    assert config.model_updates_topic == "model-updates-t"
    # a new live model: the newest 30 history items, disliked ones read with their flag
    assert config.model == live_model_config()
    assert (config.model.max_len, config.model.flagged_input) == (30, "embed")
    assert config.model.dislike_flag_init_std == 0.0  # the flag starts as meaning nothing
    assert (source.topic, source.group) == ("training-examples-t", "recoil-learner-no_signal-t")
    assert (args.threads, args.metrics_port) == (1, loop.ports.learner_metrics["no_signal"])


def test_a_new_live_model_can_still_drop_disliked_items(tmp_path: Path) -> None:
    argv = [*_loop(tmp_path).learner_command("feature_and_labels")[3:], "--flagged-input", "drop"]
    config, _ = configs_from_args(build_parser().parse_args(argv))
    assert config.model.flagged_input == "drop"
    with pytest.raises(SystemExit):  # argparse: not one of the choices
        build_parser().parse_args([*argv, "--flagged-input", "ignore"])


def test_the_simulator_command_splits_and_probes_every_arm(tmp_path: Path) -> None:
    loop = _loop(tmp_path)
    args = build_parser().parse_args(loop.simulator_command()[3:])
    config = live_config(args)
    assert config.serving_url == loop.serving_url("feature_and_labels")
    assert config.split == (("feature_and_labels", 0.7), ("no_signal", 0.3))
    assert config.switch == ("no_signal", "feature_and_labels", 60.0)
    assert dict(config.probe_urls) == {a: loop.serving_url(a) for a in loop.config.arms}
    assert (config.seed, config.users, config.rate) == (3, 50, 150.0)
    assert (args.topic, args.examples_topic) == ("interactions-t", "training-examples-t")
    assert (args.results, args.ab_results) == (loop.config.results_file, loop.config.ab_file)


def test_the_worker_command_round_trips(tmp_path: Path) -> None:
    from streams.config import StreamsConfig

    config = StreamsConfig(input_topic="interactions-t", data_dir=tmp_path, web_port=1)
    args = build_parser().parse_args(worker_command(KafkaSettings("h:1"), config)[3:])
    assert config_from_args(args) == config and args.supervise


def test_the_demo_builds_its_loop_from_the_loops_settings(tmp_path: Path) -> None:
    from recoil.core.errors import ConfigError
    from recoil.core.settings import from_args

    argv = [
        "demo",
        "--arms",
        "no_signal,feature_only",
        "--split",
        "no_signal=0.25,feature_only=0.75",
    ]
    args = build_parser().parse_args(
        [*argv, "--users", "20", "--switch", "no_signal=feature_only@5"]
    )
    config = from_args(LoopConfig, args, workdir=tmp_path)
    assert (config.arms, config.users, config.switch) == (
        ("no_signal", "feature_only"),
        20,
        "no_signal=feature_only@5",
    )
    with pytest.raises(ConfigError, match="--arms"):
        from_args(
            LoopConfig, build_parser().parse_args(["demo", "--arms", "nope"]), workdir=tmp_path
        )
