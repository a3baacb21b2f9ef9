"""Fixed batches through the continuous learner's module, in one process or as one rank of N.

``python -m tests.support.ddp_steps OUT_DIR [cpu|cuda]`` is one rank of a DDP run: Lightning
reads rank and world from the environment the test sets (``LOCAL_RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``: the torchrun / multi-node path,
where Lightning launches nothing itself) and trains this rank's share of
``PLAN`` through the same ``encode_batch`` and ``ContinuousModule`` the learner
uses on Kafka batches. The test trains one process on every step's batches
concatenated in rank order and compares the two models.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import lightning as L
import torch
from torch.utils.data import DataLoader, IterableDataset

from learner.arms import resolve_arm
from learner.distributed import ONE_PROCESS, Ranks, ddp_strategy, new_ids
from learner.kafka_source import RawBatch
from learner.model import ModelConfig
from learner.stream_training import (
    ContinuousModule,
    StreamBatch,
    StreamState,
    encode_batch,
    no_collate,
)
from learner.synthetic import synthetic_examples
from learner.vocab import Vocabularies
from recoil.core.records import TrainingExample

WORLD = 2
ARM = resolve_arm("feature_and_labels")
# dropout 0: a run's random draws are then only the rows new items get, in the same order
MODEL = ModelConfig(embedding_dim=16, hidden_dim=16, max_len=12, dropout=0.0)
# examples per rank at each step: unequal sizes, a rank with none, a step where no rank
# has any (a tick for both), and new items arriving at most steps
SIZES = ((8, 5), (6, 0), (0, 0), (3, 9), (0, 7), (10, 10), (4, 2))
RESEED = 7  # both runs draw new rows from the same generator state


def plan() -> list[list[list[TrainingExample]]]:
    """steps x ranks x examples, cut in arrival order from one synthetic stream."""
    examples = synthetic_examples(num_users=10, events_per_user=12, num_items=90, seed=3)
    steps, at = [], 0
    for sizes in SIZES:
        step = []
        for size in sizes:
            step.append(examples[at : at + size])
            at += size
        steps.append(step)
    return steps


def new_module() -> ContinuousModule:
    L.seed_everything(0, verbose=False)
    module = cast(ContinuousModule, ContinuousModule.from_config(MODEL, lr=5e-3))
    module.gradient_clip_val = 1.0
    return module


class _Batches(IterableDataset[StreamBatch]):
    """This rank's share of ``PLAN`` (``ranks=None``: every rank's, concatenated)."""

    def __init__(self, state: StreamState, ranks: Ranks | None) -> None:
        self.state, self.ranks = state, ranks

    def __iter__(self) -> Iterator[StreamBatch]:
        for step in plan():
            if self.ranks is None:
                # the ids in the order N ranks agree on: rank 0's new ones, then rank 1's
                for share in step:
                    items, creators = new_ids(share, self.state.vocabs)
                    self.state.vocabs.items.add(items)
                    self.state.vocabs.creators.add(creators)
                examples = tuple(e for share in step for e in share)
                raw = RawBatch(examples, {}, 0, 0)
                yield encode_batch(raw, self.state, ARM, MODEL.max_len, ONE_PROCESS)
            else:
                raw = RawBatch(tuple(step[self.ranks.rank]), {}, 0, 0)
                yield encode_batch(raw, self.state, ARM, MODEL.max_len, self.ranks)


class _Reseed(L.Callback):
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        torch.manual_seed(RESEED)


def train(
    distributed: bool, accelerator: str = "cpu"
) -> tuple[ContinuousModule, StreamState, int, int]:
    """Train ``PLAN``; returns the module, the stream state, the global step and the rank
    (N ranks: gloo between CPU processes, NCCL between GPUs)."""
    torch.set_num_threads(1)
    module = new_module()
    state = StreamState(Vocabularies(), {})
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=WORLD if distributed else 1,
        strategy=ddp_strategy() if distributed else "auto",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[_Reseed()],
    )
    ranks = Ranks(trainer.global_rank, trainer.world_size) if distributed else None
    loader = DataLoader(
        _Batches(state, ranks), batch_size=None, collate_fn=no_collate, num_workers=0
    )
    trainer.fit(module, loader)
    return module, state, trainer.global_step, trainer.global_rank


def main(out: Path, accelerator: str) -> None:
    module, state, step, rank = train(distributed=True, accelerator=accelerator)
    torch.save(
        {
            "state_dict": {k: v.cpu() for k, v in module.state_dict().items()},
            "step": step,
            "items": state.vocabs.items.ids(),
            "creators": state.vocabs.creators.ids(),
            "meta": dict(state.items_meta),
        },
        out / f"rank{rank}.pt",
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "cpu")
