"""ContinuousModule under a real Lightning Trainer: ticks take no step, tables grow
mid-training, and a run resumed from a checkpoint continues exactly."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset

from learner.features import encode_examples
from learner.model import ModelConfig
from learner.stream_training import ContinuousModule, StreamBatch, no_collate
from learner.synthetic import synthetic_examples
from learner.vocab import Vocabularies

torch.set_num_threads(1)
CONFIG = ModelConfig(embedding_dim=16, hidden_dim=16, max_len=20, dropout=0.0)


def _batches(ticks: bool = True, grow: bool = True) -> list[StreamBatch]:
    """Four batches whose vocabulary grows batch by batch (unless not ``grow``: all ids
    known from the start), with a tick between each (if ``ticks``)."""
    examples = synthetic_examples(num_users=8, events_per_user=25, num_items=90, seed=3)
    vocabs = Vocabularies()
    if not grow:
        encode_examples(examples, vocabs, CONFIG.max_len, "feature_and_labels")
    batches: list[StreamBatch] = []
    for n, start in enumerate(range(0, 128, 32)):
        chunk = examples[start : start + 32]
        tensors = encode_examples(chunk, vocabs, CONFIG.max_len, "feature_and_labels")
        sizes = (len(vocabs.items), len(vocabs.creators))
        ids = tuple(e.event_id for e in chunk)
        batches.append(StreamBatch(tensors, ids, {0: start + 32}, *sizes, 0, 0))
        if ticks and n < 3:
            batches.append(StreamBatch(None, (), {0: start + 32}, *sizes, 0, 0))
    return batches


class _Stream(IterableDataset[StreamBatch]):
    """Batches without a length, like the Kafka stream (Lightning treats sized and
    unsized loaders differently on resume)."""

    def __init__(self, batches: list[StreamBatch]) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[StreamBatch]:
        yield from self.batches


def _fit(module: ContinuousModule, batches: list[StreamBatch], max_steps: int,
         ckpt: Path | None = None, save: Path | None = None) -> L.Trainer:  # fmt: skip
    """Fit as the learner does: an epoch that does not end, stopped by ``max_steps``."""
    trainer = L.Trainer(
        max_epochs=-1, max_steps=max_steps, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
        limit_val_batches=0,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loader = DataLoader(_Stream(batches), batch_size=None, collate_fn=no_collate)
        trainer.fit(module, loader, ckpt_path=ckpt, weights_only=True if ckpt else None)
    if save is not None:
        trainer.save_checkpoint(save, weights_only=False)
    return trainer


def _module() -> ContinuousModule:
    L.seed_everything(0, verbose=False)
    module = ContinuousModule.from_config(CONFIG)
    assert isinstance(module, ContinuousModule)
    return module


def test_ticks_take_no_step_and_tables_grow_with_the_vocabulary() -> None:
    batches = _batches()
    module = _module()
    assert module.model.num_items == CONFIG.num_items  # nothing known yet
    trainer = _fit(module, batches, max_steps=4)
    assert trainer.global_step == 4
    assert trainer.fit_loop.epoch_loop.batch_progress.total.completed == 7  # 3 were ticks
    last = batches[-1]
    assert module.model.num_items == last.num_items > batches[0].num_items
    assert module.model.num_creators == last.num_creators
    assert module.label_counts.shape == (last.num_items,)
    optimizer = trainer.optimizers[0]
    for param in module.parameters():
        state = optimizer.state[param]
        assert state["exp_avg"].shape == param.shape  # moments padded along with the table
    assert torch.isfinite(module.model.item_embeddings()).all()


def test_resumed_run_continues_exactly(tmp_path: Path) -> None:
    # New rows are drawn from torch's global generator, which checkpoints do not hold;
    # with every id known up front both runs draw the same rows at step 1.
    batches = _batches(ticks=False, grow=False)
    straight = _module()
    _fit(straight, batches, max_steps=4)

    first = _module()
    ckpt = tmp_path / "half.ckpt"
    _fit(first, batches, max_steps=2, save=ckpt)  # stopped mid-epoch, as the learner is
    resumed = ContinuousModule(**torch.load(ckpt, weights_only=True)["hyper_parameters"])
    # the stream resumes after the checkpoint's offsets: batches 3 and 4
    trainer = _fit(resumed, batches[2:], max_steps=4, ckpt=ckpt)
    assert trainer.global_step == 4
    assert resumed.model.num_items == straight.model.num_items
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(),
                            strict=True):  # fmt: skip
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_module_refuses_automatic_optimization() -> None:
    module = _module()
    assert module.automatic_optimization is False
    with pytest.raises(ValueError, match="manually"):
        module.automatic_optimization = True
