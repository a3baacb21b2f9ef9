"""recoil.core.settings: flags derived from a config dataclass, and back."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import pytest

from recoil.core.errors import ConfigError
from recoil.core.settings import (
    add_arguments,
    differing_settings,
    from_args,
    option,
    setting,
    to_flags,
)
from streams.config import StreamsConfig


@dataclass(frozen=True)
class Toy:
    store: Path = setting(help="where things go")
    name: str = setting("toy", "a name")
    size: int = setting(3, "how many")
    rate: float = setting(0.5, "how fast")
    limit: int | None = setting(None, "at most this many")
    kind: Literal["a", "b"] = setting("a", "which kind")
    checked: bool = setting(True, "skip the checks")
    verbose: bool = setting(False, "say more")
    group: str | None = setting("g-0", "group id ('' = none)", empty_is_none=True)
    idle_s: float | None = setting(None, "stop when idle", flag="--stop-when-idle")
    tags: tuple[str, ...] = setting(("x", "y"), "comma-separated tags")
    internal: int = 7  # not a setting: not on the command line

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"size must be >= 1, got {self.size}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toy")
    add_arguments(parser, Toy)
    return parser


def test_the_parser_has_one_option_per_setting_with_its_default_type_and_help() -> None:
    actions = {a.dest: a for a in _parser()._actions if a.dest != "help"}
    assert set(actions) == {
        "store",
        "name",
        "size",
        "rate",
        "limit",
        "kind",
        "checked",
        "verbose",
        "group",
        "idle_s",
        "tags",
    }
    assert actions["store"].required and actions["store"].option_strings == ["--store"]
    assert (actions["size"].default, actions["size"].type, actions["size"].help) == (
        3,
        int,
        "how many",
    )
    assert actions["kind"].choices == ["a", "b"]
    assert actions["limit"].type is int and actions["limit"].default is None
    assert actions["checked"].option_strings == ["--no-checked"]
    assert actions["verbose"].option_strings == ["--verbose"]
    assert actions["idle_s"].option_strings == ["--stop-when-idle"]


def test_defaults_parse_to_the_dataclass_defaults() -> None:
    args = _parser().parse_args(["--store", "s"])
    assert from_args(Toy, args) == Toy(store=Path("s"))


def test_config_to_flags_to_config_is_the_same_config() -> None:
    config = Toy(
        store=Path("/x"),
        name="-n",  # a value that looks like a flag
        size=9,
        rate=0.1 + 0.2,
        limit=4,
        kind="b",
        checked=False,
        verbose=True,
        group=None,
        idle_s=2.5,
        tags=("a", "b", "c"),
    )
    args = _parser().parse_args(to_flags(config))
    assert from_args(Toy, args) == config


def test_a_worker_config_round_trips_through_its_flags(tmp_path: Path) -> None:
    from recoil.core.labels import LabelConfig

    config = StreamsConfig(
        data_dir=tmp_path,
        store="memory",
        metrics_port=0,
        batch_timeout=0.3,
        offset_guard=False,
        labels=LabelConfig(history_length=9, skip_weight=0.25),
    )
    parser = argparse.ArgumentParser()
    add_arguments(parser, StreamsConfig)
    assert from_args(StreamsConfig, parser.parse_args(to_flags(config))) == config


def test_a_value_the_config_rejects_names_the_flag() -> None:
    args = _parser().parse_args(["--store", "s", "--size", "0"])
    with pytest.raises(ConfigError, match=r"size must be >= 1, got 0 \(set by --size\)"):
        from_args(Toy, args)
    parser = argparse.ArgumentParser()
    add_arguments(parser, StreamsConfig)
    with pytest.raises(ConfigError, match=r"batch_size=0: must be >= 1 \(set by --batch-size\)"):
        from_args(StreamsConfig, parser.parse_args(["--batch-size", "0"]))


def test_a_value_of_the_wrong_type_or_choice_is_refused_by_the_parser(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for argv in (["--size", "many"], ["--kind", "c"]):
        with pytest.raises(SystemExit):
            _parser().parse_args(["--store", "s", *argv])
        assert f"argument {argv[0]}" in capsys.readouterr().err


def test_only_and_command_defaults() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser, Toy, only=("size", "kind"), defaults={"size": 5})
    args = parser.parse_args([])
    assert from_args(Toy, args, only=("size", "kind"), store=Path("s")) == Toy(Path("s"), size=5)
    assert option(Toy, "idle_s") == "--stop-when-idle"
    with pytest.raises(TypeError, match="no settings"):
        add_arguments(parser, Toy, only=("internal",))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["learn", "--store", "s", "--snapshot-every-steps", "0"], "--snapshot-every-steps"),
        (["learn", "--store", "s", "--batch-size", "0"], "--batch-size"),
        (["learn", "--store", "s", "--rejoin-after", "-1"], "--rejoin-after"),
        (["simulate", "--policy-share", "2"], "--policy-share"),
        # NaN and inf got through `< 0` checks; asyncio.sleep(nan) returns at once
        (["simulate", "--rate", "nan"], "--rate"),
        (["simulate", "--rate", "inf"], "--rate"),
        (["simulate", "--freshness-seconds", "nan"], "--freshness-seconds"),
        (
            ["simulate", "--switch", "a=b@nan", "--probe", "a=http://h", "--probe", "b=http://i"],
            "switch time",
        ),
        (["worker", "--heartbeat-interval", "5"], "--heartbeat-interval"),
    ],
)
def test_a_command_names_the_flag_of_a_bad_value(argv: list[str], message: str) -> None:
    from recoil.cli import build_parser
    from recoil.commands.learn import configs_from_args
    from recoil.commands.simulate import live_config
    from recoil.commands.worker import config_from_args

    build = {"learn": configs_from_args, "simulate": live_config, "worker": config_from_args}
    with pytest.raises(ConfigError, match=message):
        build[argv[0]](build_parser().parse_args(argv))


def test_building_recoils_parser_leaves_heavy_config_modules_unimported() -> None:
    """recoil learn's, simulate's, demo's and experiment's settings are added when used."""
    import subprocess
    import sys

    heavy = ["torch", "simulator.live", "simulator.probe", "recoil.loop"]
    code = (
        "import sys; from recoil.cli import build_parser; build_parser(); "
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_differing_settings_names_the_flags_a_saved_config_overrides() -> None:
    """A resumed learner keeps its checkpoint's model; the flags it did not take are named
    (vocabulary sizes, which grow with the stream, are no settings and never named)."""
    from learner.model import ModelConfig

    saved = ModelConfig(num_items=500, embedding_dim=64, encoder="gru")
    given = ModelConfig(num_items=2, embedding_dim=32, encoder="sasrec")
    assert differing_settings(saved, given) == [
        "--embedding-dim 64 (given 32)",
        "--encoder gru (given sasrec)",
    ]
    assert differing_settings(saved, replace(saved, num_items=9)) == []
    with pytest.raises(TypeError, match="not one class"):
        differing_settings(saved, object())
