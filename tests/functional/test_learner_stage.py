"""A labelled arm trained as a stage on exclude_heuristic's weights (real Lightning training)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from learner.model import ModelConfig
from learner.offline import TrainConfig, stage_parameters, train_offline
from learner.synthetic import synthetic_examples
from recoil.core.records import TrainingExample

torch.set_num_threads(1)
pytestmark = [pytest.mark.filterwarnings("ignore:.*LeafSpec.*")]

DROP = ModelConfig(embedding_dim=16, hidden_dim=16, max_len=10, dropout=0.0, flagged_input="drop")
TRAIN = TrainConfig(max_steps=30, batch_size=64, lr=3e-2, seed=2)


@pytest.fixture(scope="module")
def examples() -> list[TrainingExample]:
    return synthetic_examples(num_users=40, events_per_user=60, num_items=60, num_clusters=6)


@pytest.mark.parametrize("rate_rows", [0, 4])
def test_a_stage_learns_only_its_dislike_parameters_from_the_heuristics_weights(
    examples: list[TrainingExample], rate_rows: int
) -> None:
    model = dataclasses.replace(DROP, dislike_rate_rows=rate_rows)
    base = train_offline(examples, "exclude_heuristic", model, TRAIN, progress=False)
    staged = train_offline(examples, "feature_and_labels", model, TRAIN, False, base=base)
    assert staged.report is not None and staged.report.stage_on == "exclude_heuristic"
    assert staged.report.num_negative > 0 and staged.vocabs == base.vocabs
    learned = {id(p) for p in stage_parameters(staged.model)}
    before = dict(base.model.named_parameters())
    moved = []
    for name, p in staged.model.named_parameters():
        if id(p) not in learned:  # the base's weights, untouched
            assert torch.equal(p, before[name]), name
        elif name in before and not torch.equal(p, before[name]):
            moved.append(name)
        elif name not in before:  # the dislike-rate rows the heuristic never builds
            assert rate_rows and name.startswith("dislike_rate") and p.abs().sum() > 0
    assert "dislike_push.weight" in moved  # the labels taught the push something
    histories = [e.history for e in examples[::37]]
    assert sum(h.disliked for history in histories for h in history) > 0
    assert not np.allclose(staged.scores(histories), base.scores(histories))
    # with its dislike parameters back at the heuristic's values, it scores as the base
    with torch.no_grad():
        assert staged.model.dislike_push is not None
        staged.model.dislike_push.weight.zero_()
        if staged.model.dislike_rate is not None:
            staged.model.dislike_rate.weight.zero_()
        # and no item feedback counted (the heuristic takes no labels to count)
        assert base.model.item_feedback is None and staged.model.item_feedback is not None
        assert float(staged.model.item_feedback[:, 1].sum()) > 0
        staged.model.item_feedback.zero_()
    np.testing.assert_allclose(staged.scores(histories), base.scores(histories), atol=1e-5)


def test_a_stage_starts_only_from_the_heuristic_and_only_where_labels_can_teach(
    examples: list[TrainingExample],
) -> None:
    few = TrainConfig(max_steps=2, batch_size=64)
    base = train_offline(examples, "exclude_heuristic", DROP, few, progress=False)
    other = train_offline(examples, "no_signal", DROP, few, progress=False)
    with pytest.raises(ValueError, match="starts from exclude_heuristic's run, not 'no_signal'"):
        train_offline(examples, "feature_and_labels", DROP, few, False, base=other)
    with pytest.raises(ValueError, match="'feature_only' has no labels"):
        train_offline(examples, "feature_only", DROP, few, False, base=base)
    embed = dataclasses.replace(DROP, flagged_input="embed")
    with pytest.raises(ValueError, match="needs flagged_input 'drop' or 'gated'"):
        train_offline(examples, "feature_and_labels", embed, few, False, base=base)
