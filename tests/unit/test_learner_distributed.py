"""The pure parts of the learner's data-parallel ranks (``learner.distributed``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from learner.arms import ARMS
from learner.distributed import (
    DeferredFailureCheckpointIO,
    PeerRows,
    Ranks,
    lineage_file,
    lineage_rank,
    loss_scale,
    new_ids,
    zero_loss,
)
from learner.features import encode_examples
from learner.model import ModelConfig, SequenceRecommender
from learner.synthetic import synthetic_examples
from learner.vocab import Vocabularies


def test_ranks_own_disjoint_partitions_that_cover_the_topic() -> None:
    partitions = range(8)
    for world in (1, 2, 3, 5, 8, 11):
        owned = [Ranks(r, world).owned_partitions(partitions) for r in range(world)]
        assert sorted(p for share in owned for p in share) == list(partitions)
        assert all(p % world == r for r, share in enumerate(owned) for p in share)
    assert Ranks(9, 11).owned_partitions(partitions) == []  # more ranks than partitions
    with pytest.raises(ValueError):
        Ranks(2, 2)


def test_lineage_files_name_their_rank() -> None:
    assert lineage_file(0) == "trained.jsonl" and lineage_file(3) == "trained.rank3.jsonl"
    assert [lineage_rank(lineage_file(r)) for r in range(4)] == [0, 1, 2, 3]
    for other in ("rolled_back.jsonl", "trained.rankx.jsonl", "trained.rank1.json", "last.ckpt"):
        assert lineage_rank(other) is None


@pytest.mark.parametrize("arm", sorted(ARMS))
def test_new_ids_are_exactly_what_encoding_adds_in_its_order(arm: str) -> None:
    # The ranks agree on these ids before encoding: an id encoding adds that new_ids missed
    # would get a different row on each rank.
    examples = synthetic_examples(num_users=8, events_per_user=20, num_items=70, seed=4)
    agreed, encoded = Vocabularies(), Vocabularies()
    for start in range(0, len(examples), 23):
        batch = examples[start : start + 23]
        items, creators = new_ids(batch, agreed)
        agreed.items.add(items)
        agreed.creators.add(creators)
        before = (len(agreed.items), len(agreed.creators))
        encode_examples(batch, agreed, 6, arm)
        assert (len(agreed.items), len(agreed.creators)) == before
        encode_examples(batch, encoded, 6, arm)
        assert agreed == encoded  # same ids, same rows, as one process would give them


def test_loss_scale_makes_the_rank_average_the_mean_over_all_rows() -> None:
    rows = (6, 0, 2)
    peers = PeerRows(rows, *(np.zeros(0, np.int64) for _ in range(5)))
    scales = [loss_scale(n, peers) for n in rows]
    means = [1.0, 0.0, 5.0]  # per-rank mean losses (the empty rank's is 0)
    assert sum(s * m for s, m in zip(scales, means, strict=True)) / len(rows) == pytest.approx(
        (6 * 1.0 + 2 * 5.0) / 8
    )
    assert loss_scale(4, None) == 1.0


def test_zero_loss_is_zero_and_reaches_every_parameter() -> None:
    model = SequenceRecommender(ModelConfig(embedding_dim=8, hidden_dim=8, max_len=4))
    loss = zero_loss(model)
    assert float(loss.detach()) == 0.0
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and not p.grad.any(), name


def test_a_failed_checkpoint_write_is_kept_until_asked(tmp_path: Path) -> None:
    io = DeferredFailureCheckpointIO()
    (tmp_path / "file").write_text("")
    io.save_checkpoint({"x": torch.ones(1)}, tmp_path / "file" / "ckpt")  # parent is a file
    with pytest.raises(OSError):
        io.raise_failure()
    io.raise_failure()  # raised once
    io.save_checkpoint({"x": torch.ones(1)}, tmp_path / "ok.ckpt")
    io.raise_failure()
    assert torch.load(tmp_path / "ok.ckpt")["x"].item() == 1.0
