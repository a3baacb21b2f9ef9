"""Stream batches for Lightning: the endless dataset and the manually stepped module.

See ``learner.continuous`` for the whole loop. Lightning fetches one batch
ahead of the step it runs, so everything the loop must account for (offsets,
event ids, vocabulary sizes) travels inside each ``StreamBatch`` instead of
being read from the source later.

With N ranks (``learner.distributed``) the dataset agrees the vocabulary with the
other ranks before encoding a batch and attaches every rank's row counts and the
other ranks' label and history rows (``StreamBatch.peers``); the module steps when
any rank has rows, a rank without any contributing a zero gradient.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

import lightning as L
import torch
from torch.utils.data import IterableDataset

from learner.arms import ArmConfig
from learner.distributed import (
    ONE_PROCESS,
    PeerRows,
    Ranks,
    ddp_unwrapped,
    gather_rows,
    loss_scale,
    sync_batch,
    zero_loss,
)
from learner.features import ExampleTensors, encode_examples
from learner.kafka_source import KafkaExampleSource, RawBatch
from learner.loss import LossTerms
from learner.module import RecommenderModule
from learner.snapshot import ItemMeta
from learner.vocab import Vocabularies
from recoil.core.records import TrainingExample


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
    peers: PeerRows | None = None  # N ranks: every rank's rows (None: one process)

    @property
    def rows(self) -> int:
        """Rows to train on, this rank's only."""
        return self.examples.num_examples if self.examples is not None else 0

    @property
    def total_rows(self) -> int:
        """Rows to train on over every rank: a step is taken when this is not 0."""
        return self.peers.total if self.peers is not None else self.rows


@dataclass
class StreamState:
    """What the dataset and the loop share: vocabularies, item metadata, and the event
    ids of batches handed to Lightning but not yet trained (it fetches one ahead)."""

    vocabs: Vocabularies
    items_meta: dict[str, ItemMeta]
    pending: deque[tuple[str, ...]] = field(default_factory=deque)


@dataclass(eq=False)
class StreamDataset(IterableDataset[StreamBatch]):
    """Endless encoded batches from a ``KafkaExampleSource`` (main process only)."""

    source: KafkaExampleSource
    state: StreamState
    arm: ArmConfig
    max_len: int
    should_stop: Callable[[], bool]
    ranks: Ranks = ONE_PROCESS

    def __iter__(self) -> Iterator[StreamBatch]:
        while True:
            raw = self.source.next_batch(self.should_stop)
            yield encode_batch(raw, self.state, self.arm, self.max_len, self.ranks)


def encode_batch(
    raw: RawBatch, state: StreamState, arm: ArmConfig, max_len: int, ranks: Ranks = ONE_PROCESS
) -> StreamBatch:
    """Encode one batch from the source under ``arm``, growing the vocabularies; with N
    ranks, a collective every rank calls once per batch (``learner.distributed``)."""
    examples: ExampleTensors | None = None
    if ranks.distributed:
        sync_batch(raw.examples, state.vocabs, state.items_meta)
    if raw.examples:
        update_items_meta_fast(state.items_meta, raw.examples)
        examples = encode_examples(raw.examples, state.vocabs, max_len, arm)
        if examples.num_examples == 0:
            examples = None
    peers = gather_rows(examples, ranks) if ranks.distributed else None
    ids = tuple(e.event_id for e in raw.examples)
    state.pending.append(ids)
    return StreamBatch(
        examples, ids, raw.offsets, len(state.vocabs.items), len(state.vocabs.creators),
        raw.duplicates, raw.invalid, tuple(sorted(raw.skipped.items())), peers,
    )  # fmt: skip


def update_items_meta_fast(meta: dict[str, ItemMeta], examples: Iterable[TrainingExample]) -> None:
    """``learner.snapshot.update_items_meta``, the same dictionary after it: an item's entry
    is replaced only when its creator or cluster differ from the one held. A batch carries
    ~50 history items per example, nearly all already known with the same values, and
    building an ``ItemMeta`` for each was ~13 ms of every 256-example batch."""
    get = meta.get
    for example in examples:
        for h in example.history:
            held = get(h.item_id)
            if held is None or held.creator_id != h.creator_id or held.cluster_id != h.cluster_id:
                meta[h.item_id] = ItemMeta(h.creator_id, h.cluster_id)
        label = ItemMeta(example.label_creator_id, example.label_cluster_id)
        if get(example.label_item_id) != label:
            meta[example.label_item_id] = label


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

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Grow the tables before the step that needs them: before, not inside,
        ``training_step``, which DDP runs inside its forward, after it has prepared its
        gradient buckets for the old shapes."""
        batch = cast(StreamBatch, batch)
        if batch.total_rows == 0:
            return
        model = self.model
        if batch.num_items <= model.num_items and batch.num_creators <= model.num_creators:
            return
        lightning_optimizer = cast(L.pytorch.core.optimizer.LightningOptimizer, self.optimizers())
        optimizer = lightning_optimizer.optimizer
        with ddp_unwrapped(self.trainer.strategy):
            self.grow_items(batch.num_items, optimizer)
            self.grow_creators(batch.num_creators, optimizer)

    def training_step(self, batch: StreamBatch, batch_idx: int) -> dict[str, float] | None:  # type: ignore[override]
        if batch.total_rows == 0:  # every rank sees the same total: all tick together
            return None
        lightning_optimizer = cast(L.pytorch.core.optimizer.LightningOptimizer, self.optimizers())
        optimizer = lightning_optimizer.optimizer
        if batch.peers is not None:
            self._observe_peers(batch.peers)
        if batch.examples is None:  # others have rows: join their all-reduce with zeros
            loss = zero_loss(self)
            self._last_terms = LossTerms(loss.detach(), loss.detach(), loss.detach())
        else:
            loss = self._common_step(batch.examples, "train")
            loss = loss * loss_scale(batch.rows, batch.peers)
            # each streamed row is trained once, so counting per step counts it once
            self.model.observe_feedback(batch.examples.label, batch.examples.is_negative)
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
            "rows": float(batch.rows),
        }

    def _observe_peers(self, peers: PeerRows) -> None:
        """What ``_common_step`` records of this rank's rows, for the other ranks' rows
        (keep the two in step: the 2-rank test compares these buffers with one process)."""
        device = self.label_counts.device
        label = torch.from_numpy(peers.label).to(device)
        self.label_counts.index_add_(0, label, torch.ones(len(label), device=device))
        self.model.observe_creators(
            torch.from_numpy(peers.history_item).to(device),
            torch.from_numpy(peers.history_creator).to(device),
        )
        self.model.observe_creators(label, torch.from_numpy(peers.label_creator).to(device))
        self.model.observe_feedback(label, torch.from_numpy(peers.label_negative).to(device) > 0)

    def transfer_batch_to_device(
        self, batch: Any, device: torch.device, dataloader_idx: int
    ) -> Any:
        if isinstance(batch, StreamBatch) and batch.examples is not None:
            return batch._replace(examples=batch.examples.to(device))
        return batch
