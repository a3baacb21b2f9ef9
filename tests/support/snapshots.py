"""A small model to publish: what the snapshot store's and serving's tests put in a store."""

from __future__ import annotations

import torch

from learner.features import encode_examples
from learner.model import ModelConfig, SequenceRecommender
from learner.snapshot import ItemMeta, update_items_meta
from learner.vocab import Vocabularies
from recoil.core.records import TrainingExample


def untrained_parts(
    examples: list[TrainingExample], arm: str, *, dim: int, max_len: int, seed: int
) -> tuple[SequenceRecommender, Vocabularies, dict[str, ItemMeta]]:
    """What ``publish_snapshot`` takes besides the store: a model initialised from
    ``seed`` (embeddings and hidden state ``dim`` wide, no dropout) over the vocabularies
    of ``examples``, those vocabularies, and the examples' item metadata. The model has
    counted the examples' labels, so where the arm takes not-to-recommend labels its
    items carry ranking offsets (``learner.item_feedback``)."""
    vocabs = Vocabularies()
    tensors = encode_examples(examples, vocabs, max_len=max_len, arm=arm)
    meta: dict[str, ItemMeta] = {}
    update_items_meta(meta, examples)
    torch.manual_seed(seed)
    config = ModelConfig(
        num_items=len(vocabs.items), num_creators=len(vocabs.creators),
        embedding_dim=dim, hidden_dim=dim, max_len=max_len, dropout=0.0,
    )  # fmt: skip
    model = SequenceRecommender(config)
    model.observe_feedback(tensors.label, tensors.is_negative)
    return model, vocabs, meta
