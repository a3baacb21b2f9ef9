"""``--model FIELD=VALUE,...`` and ``--label NAME=VALUE`` of ``recoil backtest`` and
``recoil experiment``."""

from __future__ import annotations

import pytest

from learner.model import ModelConfig
from recoil.commands._ablation_args import parse_labels, parse_model
from recoil.core.errors import ConfigError
from recoil.core.labels import LabelConfig


def test_model_settings_are_typed_by_the_config_field() -> None:
    config = parse_model(" flagged_input=embed, dislike_push_init=0,dislike_map=true,max_len=12")
    assert config == ModelConfig(
        flagged_input="embed", dislike_push_init=0.0, dislike_map=True, max_len=12
    )
    assert isinstance(config.dislike_push_init, float) and isinstance(config.max_len, int)
    assert parse_model("") == ModelConfig()
    base = ModelConfig(max_len=20)
    assert parse_model("dislike_push=false", base) == ModelConfig(max_len=20, dislike_push=False)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("nope=1", "'nope=1' is not FIELD=VALUE"),
        ("num_items=5", "'num_items=5' is not FIELD=VALUE"),  # sized by the data, not set
        ("dislike_map", "'dislike_map' is not FIELD=VALUE"),
        ("dislike_map=maybe", "dislike_map: expected true or false"),
        ("max_len=abc", "max_len: expected int"),
        ("flagged_input=ignore", "flagged_input must be"),
        ("max_len=0", "max_len must be >= 1"),
    ],
)
def test_a_bad_model_setting_names_what_to_fix(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        parse_model(text)


def test_label_settings_are_typed_and_keep_the_base() -> None:
    labels = parse_labels(["dislike_weight=10", "dismiss-is-dislike=no", "skip_weight=0"])
    assert labels == LabelConfig(dislike_weight=10.0, dismiss_is_dislike=False, skip_weight=0.0)
    assert parse_labels([]) == LabelConfig()
    base = LabelConfig(history_length=80)  # an experiment's window stays its own
    assert parse_labels(["like_weight=2"], base) == LabelConfig(history_length=80, like_weight=2.0)


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        (["history_length=10"], "expected NAME=VALUE with NAME one of"),  # the model's window
        (["nope=1"], "expected NAME=VALUE with NAME one of"),
        (["dislike_weight"], "expected NAME=VALUE"),
        (["dislike_weight=lots"], "dislike_weight='lots': expected a number"),
        (["dislike_weight=nan"], "expected a finite number"),
        (["dislike_weight=-1"], "label weights must be >= 0"),
        (["dismiss_is_dislike=perhaps"], "expected true or false"),
    ],
)
def test_a_bad_label_setting_names_what_to_fix(overrides: list[str], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        parse_labels(overrides)
