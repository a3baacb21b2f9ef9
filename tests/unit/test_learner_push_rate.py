"""The continuous learner moves the dislike push weights at a fraction of the tables'
learning rate, so they average over more than a minute or two of the stream."""

from __future__ import annotations

from pathlib import Path

import pytest

from learner.continuous import _new_module
from learner.continuous_loop import LearnerConfig


def _groups(config: LearnerConfig) -> list[tuple[float, int]]:
    optimizer = _new_module(config).configure_optimizers()
    return [(group["lr"], len(group["params"])) for group in optimizer.param_groups]


def test_the_push_weights_learn_at_the_configured_fraction_of_lr(tmp_path: Path) -> None:
    config = LearnerConfig(store=tmp_path, checkpoint_dir=tmp_path, lr=0.01, dislike_lr_scale=0.25)
    tables, push = _groups(config)
    assert tables[0] == pytest.approx(0.01) and tables[1] > 1
    assert push[0] == pytest.approx(0.0025) and push[1] >= 1


def test_the_default_slows_the_push_weights(tmp_path: Path) -> None:
    config = LearnerConfig(store=tmp_path, checkpoint_dir=tmp_path)
    (tables_lr, _), (push_lr, _) = _groups(config)
    assert push_lr < tables_lr == config.lr


def test_a_non_positive_push_rate_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dislike_lr_scale"):
        LearnerConfig(store=tmp_path, checkpoint_dir=tmp_path, dislike_lr_scale=0.0)
