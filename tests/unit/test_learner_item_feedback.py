"""The items' dislike shares as ranking offsets: the estimate, and how the model ranks,
indexes and counts with them (learner.item_feedback, SequenceRecommender)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from learner.features import encode_histories
from learner.index import IndexConfig, build_index
from learner.item_feedback import feedback_offsets
from learner.model import ModelConfig, SequenceRecommender
from learner.vocab import FIRST_INDEX, Vocabularies, Vocabulary
from recoil.core.records import HistoryItem

VOCABS = Vocabularies(Vocabulary([f"i{n}" for n in range(10)]), Vocabulary(["c0", "c1"]))
HISTORIES = [
    [HistoryItem(f"i{n}", f"c{n % 2}", None, n == 3, n % 6, n % 8, 0.0) for n in range(5)],
    [HistoryItem("i7", "c1", None, False, 5, 0, 0.0)],
    [],
]


def _model(offset: float, prior: float = 10.0) -> SequenceRecommender:
    torch.manual_seed(0)
    config = ModelConfig(
        num_items=12, num_creators=4, embedding_dim=8, hidden_dim=16, max_len=8, dropout=0.0,
        item_dislike_offset=offset, item_dislike_prior=prior,
    )  # fmt: skip
    return SequenceRecommender(config).eval()


def test_the_offset_is_the_weighted_log_of_the_shrunk_share_kept() -> None:
    # rows: (positives, dislikes)
    counts = torch.tensor([[0, 0], [30, 0], [10, 10], [0, 4], [60, 6]], dtype=torch.float32)
    weight, prior = 2.0, 10.0
    share = 20 / 120  # the catalogue's: 20 dislikes among 120 labels
    got = feedback_offsets(counts, weight, prior)
    for row, (p, n) in enumerate(counts.tolist()):
        q = (n + prior * share) / (p + n + prior)
        want = weight * (math.log(1 - q) - math.log(1 - share))
        assert float(got[row]) == pytest.approx(want, rel=1e-5, abs=1e-6)
    assert float(got[0]) == 0.0  # never labelled: the catalogue's share, no offset
    assert float(got[1]) > 0 > float(got[2]) > float(got[3])  # never disliked ranks up
    assert got.dtype == torch.float32


def test_no_dislike_no_weight_or_only_dislikes_give_finite_offsets() -> None:
    liked = torch.tensor([[5, 0], [0, 0], [9, 0]], dtype=torch.float32)
    assert torch.equal(feedback_offsets(liked, 2.0, 10.0), torch.zeros(3))
    assert torch.equal(feedback_offsets(torch.zeros(3, 2), 2.0, 10.0), torch.zeros(3))
    mixed = torch.tensor([[5, 1], [0, 7]], dtype=torch.float32)
    assert torch.equal(feedback_offsets(mixed, 0.0, 10.0), torch.zeros(2))
    disliked = torch.tensor([[0, 3], [0, 0]], dtype=torch.float32)  # every label a dislike
    assert torch.isfinite(feedback_offsets(disliked, 2.0, 10.0)).all()
    # no prior: an item's own share, and an unlabelled item keeps the catalogue's
    bare = feedback_offsets(torch.tensor([[3, 1], [0, 0]], dtype=torch.float32), 1.0, 0.0)
    assert float(bare[0]) == pytest.approx(0.0, abs=1e-6) and float(bare[1]) == 0.0


def test_counts_are_per_item_row_and_kind() -> None:
    m = _model(1.0)
    items = torch.tensor([3, 3, 5, 3, 2])
    negative = torch.tensor([False, True, True, False, False])
    m.observe_feedback(items, negative)
    counts = m.item_feedback
    assert counts is not None and counts.shape == (12, 2)
    assert counts[3].tolist() == [2.0, 1.0] and counts[5].tolist() == [0.0, 1.0]
    assert counts[2].tolist() == [1.0, 0.0] and float(counts.sum()) == 5.0


def test_without_the_offset_the_model_ranks_and_saves_as_before() -> None:
    m = _model(0.0)
    assert m.item_feedback is None and "item_feedback" not in m.state_dict()
    batch = encode_histories(HISTORIES, VOCABS, 8, "feature_and_labels")
    with torch.no_grad():
        assert torch.equal(m.index_vectors(), m.item_embeddings())
        assert torch.equal(m.query_vectors(batch), m.user_state(batch))
        want = m.user_state(batch) @ m.item_embeddings()[FIRST_INDEX:].T
        assert torch.equal(m.scores(batch), want)
    m.observe_feedback(torch.tensor([4]), torch.tensor([True]))  # nothing to count into


def test_ranking_adds_each_items_offset_and_an_inner_product_index_agrees() -> None:
    m = _model(2.0)
    items = torch.tensor([4, 4, 4, 5, 6, 6, 1, 0])  # rows 0 and 1 are reserved: not counted
    negative = torch.tensor([True, True, False, False, False, True, True, True])
    m.observe_feedback(items, negative)
    assert m.item_feedback is not None
    assert m.item_feedback[4].tolist() == [1.0, 2.0] and m.item_feedback[5].tolist() == [1.0, 0.0]
    assert float(m.item_feedback[:FIRST_INDEX].sum()) == 0.0
    batch = encode_histories(HISTORIES, VOCABS, 8, "feature_and_labels")
    with torch.no_grad():
        offsets = feedback_offsets(m.item_feedback, 2.0, 10.0)
        v = m.item_embeddings()[FIRST_INDEX:]
        want = m.user_state(batch) @ v.T + offsets[FIRST_INDEX:]
        got = m.scores(batch)
        assert torch.allclose(got, want, atol=1e-6)
        # item 4 (two dislikes of three) ranks lower than without the offset; 5 higher
        plain = m.user_state(batch) @ v.T
        assert bool((got[:, 4 - FIRST_INDEX] < plain[:, 4 - FIRST_INDEX]).all())
        assert bool((got[:, 5 - FIRST_INDEX] > plain[:, 5 - FIRST_INDEX]).all())
        # the vectors a FAISS inner-product index holds rank as ``scores`` does
        keys = m.index_vectors()[FIRST_INDEX:].numpy()
        queries = m.query_vectors(batch).numpy()
        assert keys.shape == (10, 9) and queries.shape == (3, 9)
        ids = np.arange(FIRST_INDEX, FIRST_INDEX + 10, dtype=np.int64)
        index = build_index(keys, ids, IndexConfig(), None)
        scores, found = index.search(queries, 10)
        assert (found == FIRST_INDEX + np.argsort(-got.numpy(), axis=1, kind="stable")).all()
        np.testing.assert_allclose(scores, -np.sort(-got.numpy(), axis=1), rtol=1e-5, atol=1e-5)


def test_the_counts_grow_with_the_items_and_travel_in_the_state_dict() -> None:
    m = _model(1.0)
    m.observe_feedback(torch.tensor([11, 11, 3]), torch.tensor([True, False, True]))
    assert m.grow_items(15)
    assert m.item_feedback is not None and m.item_feedback.shape == (15, 2)
    assert m.item_feedback[11].tolist() == [1.0, 1.0] and float(m.item_feedback[12:].sum()) == 0
    again = SequenceRecommender(m.current_config())
    again.load_state_dict(m.state_dict())
    assert again.item_feedback is not None and torch.equal(again.item_feedback, m.item_feedback)


def test_bad_offset_settings_say_what_to_fix() -> None:
    for name, value in (("item_dislike_offset", -1.0), ("item_dislike_prior", float("nan"))):
        with pytest.raises(ValueError, match=name):
            ModelConfig(**{name: value})  # type: ignore[arg-type]
