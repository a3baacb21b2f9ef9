"""What a snapshot read from disk must satisfy before anyone serves it.

The manifest's checksums prove that the files are the ones the publisher wrote, not
that what it wrote makes sense: a buggy or foreign publisher can checksum weights that
do not fit ``model_config``, weights holding NaN, an embeddings file of another shape,
or a FAISS index over other vectors (which would rank items by scores the model never
gave). Serving would swap such a snapshot in and answer garbage, or a 500, to every
request. Each check raises ``ValueError`` saying what disagrees; ``load_snapshot``
reports it as a ``SnapshotError`` naming the directory.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from learner.index import ItemIndex
from learner.model import ModelConfig, SequenceRecommender
from learner.vocab import FIRST_INDEX, Vocabularies


def check_weights_fit(weights: Mapping[str, torch.Tensor], config: ModelConfig) -> None:
    """``weights`` must be finite and could be ``SequenceRecommender(config)``'s, checked
    before that model is built (``load_state_dict`` then checks every shape). The model
    takes at least ``least_values(config)``; a ``model_config`` that claims more than the
    weights hold (10^9 items, a GRU of 65,536 layers) would have it allocated, and
    initialised, first."""
    held = sum(t.numel() for t in weights.values())
    needed = least_values(config)
    if needed > held:
        raise ValueError(
            f"model_config's tables ({config.num_items} items and {config.num_creators} "
            f"creators of {config.embedding_dim}) and {config.encoder} encoder "
            f"({config.num_layers} layers, width {config.hidden_dim}) take at least {needed} "
            f"values; the weights hold {held}"
        )
    for name, tensor in weights.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"weight {name} holds NaN or infinite values")


def least_values(config: ModelConfig) -> int:
    """A lower bound on the values of ``SequenceRecommender(config)``'s weights: its item
    and creator input tables, and per encoder layer the GRU's recurrent matrices (3·H·H)
    or the transformer's attention (4·D·D) and feed-forward (2·D·H) matrices, and the
    items' feedback counts (2 per item) where the model has them."""
    dim, width = config.embedding_dim, config.hidden_dim
    tables = (config.num_items + config.num_creators) * dim
    if config.counts_item_feedback:
        tables += 2 * config.num_items
    per_layer = 3 * width * width if config.encoder == "gru" else 4 * dim * dim + 2 * dim * width
    return tables + config.num_layers * per_layer


def check_agrees(
    model: SequenceRecommender,
    vocabs: Vocabularies,
    embeddings: np.ndarray,
    index: ItemIndex,
    states: np.ndarray,
) -> None:
    """Vocabularies, embeddings and index must describe ``model``: a row per table row,
    the model's own ``v`` (with the items' offsets: ``index_vectors``), and an index that
    finds items by ``s·v`` for the query vectors ``states`` (Q, D or D + 1)."""
    if (len(vocabs.items), len(vocabs.creators)) != (model.num_items, model.num_creators):
        raise ValueError(
            f"the vocabularies have {len(vocabs.items)} item and {len(vocabs.creators)} creator "
            f"rows, the model {model.num_items} and {model.num_creators}"
        )
    with torch.no_grad():
        v = model.index_vectors().numpy()  # (rows, D or D + 1)
    if embeddings.dtype != np.float32 or embeddings.shape != v.shape:
        raise ValueError(
            f"item embeddings are {embeddings.dtype} {embeddings.shape}, the model's float32 "
            f"{v.shape}"
        )
    if not np.allclose(embeddings, v, rtol=1e-5, atol=1e-6):  # NaN is never close
        raise ValueError("item embeddings are not the model's (or hold NaN or infinite values)")
    if (index.dim, index.num_items) != (v.shape[1], len(v) - FIRST_INDEX):
        raise ValueError(
            f"the index holds {index.num_items} vectors of {index.dim} dimensions, the model "
            f"{len(v) - FIRST_INDEX} items of {v.shape[1]}"
        )
    scores, found = index.search(states, min(10, index.num_items))  # (Q, k) each
    hit = found >= 0
    ids = found[hit]
    if not hit.any() or ids.min() < FIRST_INDEX or ids.max() >= len(v):
        raise ValueError(f"the index answers item rows {sorted(set(found.ravel().tolist()))[:10]}")
    # s·v of every item found, by the model's own vectors: an index over other vectors
    # (or under other ids) scores them otherwise
    exact = np.einsum("qd,qkd->qk", states, v[np.where(hit, found, 0)])[hit]
    if not np.allclose(scores[hit], exact, rtol=1e-4, atol=1e-4):
        raise ValueError("the index scores items otherwise than the model's embeddings do")
