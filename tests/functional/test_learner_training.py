"""Real Lightning training of small models: the loss drops, the offline API ranks,
saves and loads, and checkpoints restore exactly."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch

from learner.features import encode_examples
from learner.model import ModelConfig
from learner.module import RecommenderModule
from learner.offline import ExampleLoader, TrainConfig, TrainedRecommender, train_offline
from learner.synthetic import synthetic_examples
from learner.vocab import Vocabularies
from recoil.core.records import TrainingExample

torch.set_num_threads(1)
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*val_dataloader.*"),
    pytest.mark.filterwarnings("ignore:.*LeafSpec.*"),
]

SMALL = ModelConfig(embedding_dim=16, hidden_dim=16, max_len=10, dropout=0.0)


@pytest.fixture(scope="module")
def examples() -> list[TrainingExample]:
    return synthetic_examples(num_users=40, events_per_user=60, num_items=60, num_clusters=6)


def quiet_trainer(**kwargs: Any) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
        enable_checkpointing=False, enable_model_summary=False, max_epochs=-1, **kwargs,
    )  # fmt: skip


def test_offline_training_lowers_the_loss_and_ranks(examples: list[TrainingExample]) -> None:
    config = TrainConfig(max_steps=80, batch_size=64, lr=3e-2, seed=1)
    rec = train_offline(examples, "feature_and_labels", SMALL, config, progress=False)
    report = rec.report
    assert report is not None and report.steps == 80
    assert report.num_negative > 0 and report.num_items == 60
    losses = [loss for _, loss in report.loss_curve]
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.5, report.loss_curve
    histories = [e.history for e in examples[:5]]
    top = rec.top_k(histories, 7, exclude_seen=False)
    assert [len(t) for t in top] == [7] * 5
    scores = rec.scores(histories)
    assert scores.shape == (5, 60)
    ids = rec.item_ids()
    assert top[2] == [ids[j] for j in np.argsort(-scores[2], kind="stable")[:7]]
    seen = rec.top_k(histories, 60, exclude_seen=True)
    for history, ranked in zip(histories, seen, strict=True):
        assert not {h.item_id for h in history} & set(ranked)
        assert len(ranked) == 60 - len({h.item_id for h in history})


def test_same_seed_same_model(examples: list[TrainingExample]) -> None:
    config = TrainConfig(max_steps=15, batch_size=64, seed=3)
    a = train_offline(examples[:500], "no_signal", SMALL, config, progress=False)
    b = train_offline(examples[:500], "no_signal", SMALL, config, progress=False)
    histories = [e.history for e in examples[:20]]
    assert np.array_equal(a.scores(histories), b.scores(histories))


def test_without_dislikes_no_signal_and_the_heuristic_are_one_model(
    examples: list[TrainingExample],
) -> None:
    """On examples without a disliked item, ``exclude_heuristic`` reads what
    ``no_signal`` reads and both train on the positives: with one seed they are the same
    model, so on any log their difference is what dropping the dislikes does, not
    which item drew which initial row."""
    liked = [
        dataclasses.replace(e, history=tuple(h for h in e.history if not h.disliked))
        for e in examples[:600]
        if e.label_kind == "positive"
    ]
    # validation as the backtest holds it out: each user's newest examples, encoded
    # first, whose long histories reach past the newest max_len items
    config = TrainConfig(max_steps=15, batch_size=64, seed=5, validation_examples=3)
    a = train_offline(liked, "no_signal", SMALL, config, progress=False)
    b = train_offline(liked, "exclude_heuristic", SMALL, config, progress=False)
    assert a.item_ids() == b.item_ids()
    state_a, state_b = a.model.state_dict(), b.model.state_dict()
    assert state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)


def test_save_and_load_give_identical_scores(
    examples: list[TrainingExample], tmp_path: Path
) -> None:
    config = TrainConfig(max_steps=10, batch_size=64)
    sasrec = dataclasses.replace(SMALL, encoder="sasrec", tie_embeddings=True)
    rec = train_offline(examples, "exclude_heuristic", sasrec, config, progress=False)
    rec.save(tmp_path / "snap")
    assert sorted(p.name for p in (tmp_path / "snap").iterdir()) == [
        "creators.vocab.json", "items.vocab.json", "model.safetensors", "recommender.json",
    ]  # fmt: skip
    loaded = TrainedRecommender.load(tmp_path / "snap")
    assert loaded.arm == rec.arm and loaded.max_len == rec.max_len
    assert loaded.vocabs == rec.vocabs
    histories = [e.history for e in examples[100:130]]
    assert np.array_equal(loaded.scores(histories), rec.scores(histories))
    assert loaded.top_k(histories, 5) == rec.top_k(histories, 5)  # the default, both sides


def test_sampled_softmax_training_lowers_the_full_loss(examples: list[TrainingExample]) -> None:
    config = TrainConfig(max_steps=60, batch_size=64, lr=3e-2, softmax="sampled", num_sampled=32)
    rec = train_offline(examples, "feature_labels_skips", SMALL, config, progress=False)
    tensors = encode_examples(examples, Vocabularies(), SMALL.max_len, "feature_labels_skips")
    module = RecommenderModule.from_config(rec.model.current_config())
    before = module.loss_terms(tensors, sampled=False).total.item()
    module.model.load_state_dict(rec.model.state_dict())
    module.eval()
    after = module.loss_terms(tensors, sampled=False).total.item()
    assert after < before - 0.3


@pytest.mark.parametrize("softmax", ["full", "sampled"])
def test_checkpoint_resume_matches_an_uninterrupted_run(
    examples: list[TrainingExample], tmp_path: Path, softmax: str
) -> None:
    vocabs = Vocabularies()
    tensors = encode_examples(examples[:256], vocabs, SMALL.max_len, "feature_and_labels")
    config = dataclasses.replace(SMALL, num_items=len(vocabs.items),
                                 num_creators=len(vocabs.creators))  # fmt: skip
    hparams = {"softmax": softmax, "num_sampled": 16, "lr": 1e-2}

    def fresh(seed: int) -> RecommenderModule:
        L.seed_everything(seed, verbose=False)
        return RecommenderModule.from_config(config, **hparams)

    straight = fresh(0)
    quiet_trainer(max_steps=12).fit(straight, ExampleLoader(tensors, 64, seed=5))

    first = fresh(0)
    trainer = quiet_trainer(max_steps=8)  # 3 batches per epoch: stops mid-epoch
    trainer.fit(first, ExampleLoader(tensors, 64, seed=5))
    ckpt = tmp_path / "step8.ckpt"
    trainer.save_checkpoint(ckpt)

    resumed = fresh(123)  # different init: everything must come from the checkpoint
    resume_trainer = quiet_trainer(max_steps=12)
    resume_trainer.fit(resumed, ExampleLoader(tensors, 64, seed=5), ckpt_path=ckpt,
                       weights_only=True)  # fmt: skip
    assert resume_trainer.global_step == 12
    for (name, a), b in zip(
        straight.state_dict().items(), resumed.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name

    loaded = RecommenderModule.load_from_checkpoint(ckpt, weights_only=True)
    for (name, a), b in zip(first.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert loaded.hparams["softmax"] == softmax


def test_checkpoint_of_a_grown_model_restores(
    examples: list[TrainingExample], tmp_path: Path
) -> None:
    vocabs = Vocabularies()
    tensors = encode_examples(examples[:128], vocabs, SMALL.max_len, "feature_only")
    config = dataclasses.replace(SMALL, num_items=len(vocabs.items),
                                 num_creators=len(vocabs.creators))  # fmt: skip
    module = RecommenderModule.from_config(config)
    trainer = quiet_trainer(max_steps=2)
    trainer.fit(module, ExampleLoader(tensors, 64))
    module.grow_items(len(vocabs.items) + 7, trainer.optimizers[0])
    module.grow_creators(len(vocabs.creators) + 3, trainer.optimizers[0])
    trainer.save_checkpoint(tmp_path / "grown.ckpt")
    loaded = RecommenderModule.load_from_checkpoint(tmp_path / "grown.ckpt", weights_only=True)
    assert loaded.model.num_items == len(vocabs.items) + 7
    assert loaded.model.num_creators == len(vocabs.creators) + 3
    for (name, a), b in zip(module.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    ckpt = torch.load(tmp_path / "grown.ckpt", weights_only=True)
    # the optimizer's state is keyed by the parameter's position in module.parameters()
    table = [p is module.model.item_input.weight for p in module.parameters()].index(True)
    exp_avg = ckpt["optimizer_states"][0]["state"][table]["exp_avg"]
    assert exp_avg.shape[0] == len(vocabs.items) + 7  # Adam moments grew with the table


class _Line(L.LightningModule):
    """y = w x + b fitted by SGD: a model whose every weight is easy to follow."""

    def __init__(self) -> None:
        super().__init__()
        self.fit = torch.nn.Linear(2, 1)
        self.seen_in_validation: list[torch.Tensor] = []

    def training_step(self, batch: list[torch.Tensor], idx: int) -> torch.Tensor:
        x, y = batch[0][:, :2], batch[0][:, 2:]
        return torch.nn.functional.mse_loss(self.fit(x), y)

    def validation_step(self, batch: list[torch.Tensor], idx: int) -> None:
        self.seen_in_validation.append(_flat(self).clone())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _flat(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


class _Steps(L.Callback):
    """The weights at the start and after every step, and at every step's start."""

    def __init__(self) -> None:
        self.after: list[torch.Tensor] = []
        self.before: list[torch.Tensor] = []

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.after.append(_flat(module).clone())

    def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, idx: int) -> None:
        self.before.append(_flat(module).clone())

    def on_train_batch_end(self, trainer: Any, module: Any, out: Any, batch: Any, i: int) -> None:
        self.after.append(_flat(module).clone())


def test_the_weight_average_is_what_validation_sees_and_training_returns() -> None:
    from learner.offline import _WeightAverage

    torch.manual_seed(0)
    x = torch.randn(64, 2)
    data = torch.cat([x, x @ torch.tensor([[2.0], [-1.0]]) + 0.5], dim=1)
    module, steps, decay = _Line(), _Steps(), 0.9
    trainer = quiet_trainer(
        max_steps=12, val_check_interval=4, check_val_every_n_epoch=None,
        num_sanity_val_steps=0, callbacks=[steps, _WeightAverage(decay)],
    )  # fmt: skip
    rows = torch.utils.data.TensorDataset(data)
    loader = torch.utils.data.DataLoader(rows, batch_size=8)
    held = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data[:8]), batch_size=8)
    trainer.fit(module, loader, held)
    expected = [steps.after[0]]
    for n, weights in enumerate(steps.after[1:], start=1):
        d = min(decay, (1 + n) / (10 + n))
        expected.append(d * expected[-1] + (1 - d) * weights)
    # validation after steps 4, 8 and 12 scored the average, not the live weights
    assert len(module.seen_in_validation) == 3
    for seen, n in zip(module.seen_in_validation, (4, 8, 12), strict=True):
        torch.testing.assert_close(seen, expected[n])
        assert not torch.allclose(seen, steps.after[n])
    # training went on from its own weights after each validation pass
    torch.testing.assert_close(steps.before[4], steps.after[4])
    torch.testing.assert_close(steps.before[8], steps.after[8])
    torch.testing.assert_close(_flat(module), expected[12])  # what training returns


def test_the_weight_average_decay_must_be_below_one() -> None:
    with pytest.raises(ValueError, match=r"weight_average_decay must be in \[0, 1\), got 1.0"):
        TrainConfig(weight_average_decay=1.0)
