"""Stream batches for Lightning: the endless dataset and the manually stepped module.

See ``learner.continuous`` for the whole loop. Lightning fetches one batch
ahead of the step it runs, so everything the loop must account for (offsets,
event ids, vocabulary sizes) travels inside each ``StreamBatch`` instead of
being read from the source later.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

import lightning as L
import torch
from torch.utils.data import IterableDataset

from learner.arms import ArmConfig
from learner.features import ExampleTensors, encode_examples
from learner.kafka_source import KafkaExampleSource
from learner.loss import LossTerms
from learner.module import RecommenderModule
from learner.snapshot import ItemMeta, update_items_meta
from learner.vocab import Vocabularies


class StreamBatch(NamedTuple):
    """One batch from the stream and everything the loop needs to account for it."""

    examples: ExampleTensors | None  # None: nothing to train (a tick)
    event_ids: tuple[str, ...]  # examples taken (the arm may have dropped some rows)
    offsets: dict[int, int]  # partition -> next offset once this batch is trained
    num_items: int  # item vocabulary rows after encoding this batch
    num_creators: int  # creator vocabulary rows after encoding this batch
    duplicates: int  # re-delivered examples dropped
    invalid: int  # records skipped, whatever the reason
    skipped: tuple[tuple[str, int], ...] = ()  # (SkipReason, records) of learner.example_check


@dataclass
class StreamState:
    """What the dataset and the loop share: vocabularies, item metadata, and the event
    ids of batches handed to Lightning but not yet trained (it fetches one ahead)."""

    vocabs: Vocabularies
    items_meta: dict[str, ItemMeta]
    pending: deque[tuple[str, ...]] = field(default_factory=deque)


class StreamDataset(IterableDataset[StreamBatch]):
    """Endless encoded batches from a ``KafkaExampleSource`` (main process only)."""

    def __init__(
        self,
        source: KafkaExampleSource,
        state: StreamState,
        arm: ArmConfig,
        max_len: int,
        should_stop: Callable[[], bool],
    ) -> None:
        self.source = source
        self.state = state
        self.arm = arm
        self.max_len = max_len
        self.should_stop = should_stop

    def __iter__(self) -> Iterator[StreamBatch]:
        state = self.state
        while True:
            raw = self.source.next_batch(self.should_stop)
            examples: ExampleTensors | None = None
            if raw.examples:
                update_items_meta(state.items_meta, raw.examples)
                examples = encode_examples(raw.examples, state.vocabs, self.max_len, self.arm)
                if examples.num_examples == 0:
                    examples = None
            ids = tuple(e.event_id for e in raw.examples)
            state.pending.append(ids)
            yield StreamBatch(
                examples, ids, raw.offsets, len(state.vocabs.items), len(state.vocabs.creators),
                raw.duplicates, raw.invalid, tuple(sorted(raw.skipped.items())),
            )  # fmt: skip


def no_collate(batch: Any) -> Any:
    """The dataset yields whole batches: nothing to collate."""
    return batch


class ContinuousModule(RecommenderModule):
    """``RecommenderModule`` stepped by hand: grows its tables before a batch that
    needs it, and takes no optimizer step for ticks (so ``global_step`` counts steps)."""

    _last_terms: LossTerms | None = None
    gradient_clip_val: float | None = None  # set by the learner (not a hyperparameter)

    @property
    def automatic_optimization(self) -> bool:
        return False

    @automatic_optimization.setter
    def automatic_optimization(self, value: bool) -> None:
        if value:
            raise ValueError("ContinuousModule is optimised manually")

    def loss_terms(self, batch: ExampleTensors, sampled: bool) -> LossTerms:
        terms = super().loss_terms(batch, sampled)
        # Detached: a kept graph would keep the item tables' gradient accumulators alive
        # with their old shapes, and the next step after a growth would fail in backward.
        self._last_terms = LossTerms(*(t.detach() for t in terms))
        return terms

    def training_step(self, batch: StreamBatch, batch_idx: int) -> dict[str, float] | None:  # type: ignore[override]
        if batch.examples is None:
            return None
        lightning_optimizer = cast(L.pytorch.core.optimizer.LightningOptimizer, self.optimizers())
        optimizer = lightning_optimizer.optimizer
        self.grow_items(batch.num_items, optimizer)
        self.grow_creators(batch.num_creators, optimizer)
        loss = self._common_step(batch.examples, "train")
        lightning_optimizer.zero_grad()
        self.manual_backward(loss)
        if self.gradient_clip_val is not None:
            self.clip_gradients(optimizer, gradient_clip_val=self.gradient_clip_val)
        lightning_optimizer.step()
        terms = self._last_terms
        assert terms is not None
        return {
            "total": float(terms.total),
            "positive": float(terms.positive),
            "not_to_recommend": float(terms.not_to_recommend),
            "rows": float(batch.examples.num_examples),
        }

    def transfer_batch_to_device(
        self, batch: Any, device: torch.device, dataloader_idx: int
    ) -> Any:
        if isinstance(batch, StreamBatch) and batch.examples is not None:
            return batch._replace(examples=batch.examples.to(device))
        return batch
