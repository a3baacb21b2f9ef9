"""Arms and feature encoding: exact tensors on tiny histories, per arm."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from learner.arms import ARMS, ArmConfig, resolve_arm, shared_training
from learner.features import encode_examples, encode_histories
from learner.vocab import Vocabularies, Vocabulary
from recoil.core.records import HistoryItem, TrainingExample


def item(
    name: str, creator: str, disliked: bool = False, dwell: int = 3, gap: int = 1
) -> HistoryItem:
    return HistoryItem(name, creator, None, disliked, dwell, gap, 0.0)


A, B, C, D = (
    item("a", "x"),
    item("b", "y", disliked=True, dwell=4),
    item("c", "x", dwell=0),
    item("d", "z"),
)


def vocabs() -> Vocabularies:
    # items a..d -> 2..5, creators x, y, z -> 2, 3, 4
    return Vocabularies(Vocabulary(["a", "b", "c", "d"]), Vocabulary(["x", "y", "z"]))


def test_arms_table() -> None:
    assert list(ARMS) == [
        "no_signal", "feature_only", "exclude_heuristic", "feature_and_labels",
        "feature_labels_skips",
    ]  # fmt: skip
    flags = {
        name: (a.dislike_feature, a.exclude_disliked, a.dislike_labels, a.skip_labels)
        for name, a in ARMS.items()
    }
    assert flags == {
        "no_signal": (False, False, False, False),
        "feature_only": (True, False, False, False),
        "exclude_heuristic": (False, True, False, False),
        "feature_and_labels": (True, False, True, False),
        "feature_labels_skips": (True, False, True, True),
    }
    assert resolve_arm("feature_only") is ARMS["feature_only"]
    with pytest.raises(ValueError, match="unknown arm 'nope'"):
        resolve_arm("nope")
    with pytest.raises(ValueError, match="at most one"):
        dataclasses.replace(ARMS["feature_only"], exclude_disliked=True)


def test_left_aligned_truncated_to_newest_items_with_the_flag() -> None:
    # An arm with the flag gets the whole history: the model picks its windows from it.
    whole = encode_histories([[A, B, C, D], [C], []], vocabs(), 3, "feature_only")
    assert whole.item.tolist() == [[2, 3, 4, 5], [4, 0, 0, 0], [0, 0, 0, 0]]
    assert whole.disliked.tolist() == [[0, 1, 0, 0], [0] * 4, [0] * 4]
    assert whole.lengths.tolist() == [4, 1, 0]
    # Other arms keep the newest max_len items.
    batch = encode_histories([[A, B, C, D], [C], []], vocabs(), 3, "no_signal")
    assert batch.item.tolist() == [[3, 4, 5], [4, 0, 0], [0, 0, 0]]
    assert batch.creator.tolist() == [[3, 2, 4], [2, 0, 0], [0, 0, 0]]
    assert batch.disliked.tolist() == [[0, 0, 0], [0, 0, 0], [0, 0, 0]]
    assert batch.dwell.tolist() == [[4, 0, 3], [0, 0, 0], [0, 0, 0]]
    assert batch.gap.tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert batch.mask.tolist() == [[True] * 3, [True, False, False], [False] * 3]
    assert batch.lengths.tolist() == [3, 1, 0]
    assert batch.item.dtype == torch.int32 and batch.dwell.dtype == torch.uint8


@pytest.mark.parametrize(
    ("arm", "items", "flags"),
    [
        ("no_signal", [2, 3, 4, 5], [0, 0, 0, 0]),
        ("feature_only", [2, 3, 4, 5], [0, 1, 0, 0]),
        ("exclude_heuristic", [2, 4, 5, 0], [0, 0, 0, 0]),
        ("feature_and_labels", [2, 3, 4, 5], [0, 1, 0, 0]),
        ("feature_labels_skips", [2, 3, 4, 5], [0, 1, 0, 0]),
    ],
)
def test_each_arms_input_transform(arm: str, items: list[int], flags: list[int]) -> None:
    batch = encode_histories([[A, B, C, D]], vocabs(), 4, arm)
    assert batch.item.tolist() == [items]
    assert batch.disliked.tolist() == [flags]


def test_exclude_heuristic_drops_before_truncating() -> None:
    # remove b, then keep the newest 2: [a, c]; truncating first would leave only [c]
    batch = encode_histories([[A, C, B]], vocabs(), 2, "exclude_heuristic")
    assert batch.item.tolist() == [[2, 4]]
    unknown = encode_histories([[item("new", "w")]], vocabs(), 2, "no_signal")
    assert unknown.item.tolist() == [[1, 0]] and unknown.creator.tolist() == [[1, 0]]


def example(
    n: int, history: tuple[HistoryItem, ...], label: str, kind: str, weight: float = 1.0
) -> TrainingExample:
    return TrainingExample(f"e{n}", "u", float(n), history, label, "x", None, kind, weight)  # type: ignore[arg-type]


EXAMPLES = [
    example(0, (), "a", "positive"),
    example(1, (A,), "b", "dislike", 2.0),
    example(2, (A, B), "c", "skip", 0.25),
    example(3, (A, B, C), "d", "positive", 1.5),
    example(4, (A, B, C, D), "e", "dislike"),
]


@pytest.mark.parametrize(
    ("arm", "source", "negative"),
    [
        ("no_signal", [0, 3], [False, False]),
        ("feature_only", [0, 3], [False, False]),
        ("exclude_heuristic", [0, 3], [False, False]),
        ("feature_and_labels", [0, 1, 3, 4], [False, True, False, True]),
        ("feature_labels_skips", [0, 1, 2, 3, 4], [False, True, True, False, True]),
    ],
)
def test_each_arms_labels(arm: str, source: list[int], negative: list[bool]) -> None:
    v = Vocabularies()
    out = encode_examples(EXAMPLES, v, 3, arm)
    # every arm grows the same vocabulary: history items first, then labels
    assert v.items.ids() == ["a", "b", "c", "d", "e"]
    assert v.creators.ids() == ["x", "y", "z"]
    assert out.source.tolist() == source
    assert out.is_negative.tolist() == negative
    all_labels = [2, 3, 4, 5, 6]
    all_weights = [1.0, 2.0, 0.25, 1.5, 1.0]
    assert out.label.tolist() == [all_labels[i] for i in source]
    assert out.weight.tolist() == [all_weights[i] for i in source]
    expected = encode_histories([EXAMPLES[i].history for i in source], v, 3, arm)
    for got, want in zip(out.history, expected, strict=True):
        assert torch.equal(got, want)


def _encoded(examples: list[TrainingExample], arm: str) -> list[torch.Tensor]:
    out = encode_examples(examples, Vocabularies(), 3, arm)
    return [out.source, out.label, out.weight, out.is_negative, *out.history]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize(
    "kinds",
    [{"positive"}, {"positive", "dislike"}, {"positive", "skip"}, {"positive", "dislike", "skip"}],
)
def test_arms_said_to_train_alike_encode_alike(kinds: set[str]) -> None:
    """``shared_training`` merges two arms exactly when their tensors on a log of these
    label kinds are equal: a backtest may then train one and report both."""
    examples = [e for e in EXAMPLES if e.label_kind in kinds]
    shared = shared_training(ARMS, kinds)
    encoded = {arm: _encoded(examples, arm) for arm in ARMS}
    for arm in ARMS:
        for other in ARMS:
            assert (shared[arm] == shared[other]) == _same(encoded[arm], encoded[other])
    assert all(shared[shared[arm]] == shared[arm] for arm in ARMS)  # the first of its kind


def test_shared_training_on_ratings_and_in_the_order_given() -> None:
    ratings = {"positive", "dislike"}  # no dwell, so no skips
    assert shared_training(ARMS, ratings)["feature_labels_skips"] == "feature_and_labels"
    shared = shared_training(["feature_labels_skips", "feature_and_labels"], ratings)
    assert shared == {
        "feature_labels_skips": "feature_labels_skips",
        "feature_and_labels": "feature_labels_skips",
    }
    # a log of likes alone: the labelled arms are feature_only
    likes = shared_training(ARMS, {"positive"})
    assert likes["feature_and_labels"] == likes["feature_labels_skips"] == "feature_only"
    assert [likes[a] for a in ("no_signal", "exclude_heuristic")] == [
        "no_signal", "exclude_heuristic",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="unknown arm"):
        shared_training(["nope"], ratings)


def test_every_arm_numbers_the_items_alike() -> None:
    """Growing on the same examples, every arm gets the same vocabularies in the same
    order, whether it reads the whole history or the newest max_len items: with one
    seed an item then draws the same initial rows in every arm. Before, ``no_signal``
    (the newest 2 alone here) met "a" last, as a label, and numbered it last."""
    examples = [
        example(0, (A, D, B), "c", "positive"),
        example(1, (A, D, B, C), "a", "positive"),
    ]
    grown = {}
    for arm in ARMS:
        v = Vocabularies()
        encode_examples(examples, v, 2, arm)
        grown[arm] = (v.items.ids(), v.creators.ids())
    assert grown["no_signal"] == (["a", "d", "b", "c"], ["x", "z", "y"])
    assert all(ids == grown["no_signal"] for ids in grown.values())


def test_without_growth_unknown_labels_are_dropped() -> None:
    v = vocabs()
    out = encode_examples(EXAMPLES, v, 3, "feature_labels_skips", grow=False)
    assert out.source.tolist() == [0, 1, 2, 3]  # label "e" is unknown
    assert v.items.num_ids == 4
    assert out.history.item.tolist() == [[0, 0, 0], [2, 0, 0], [2, 3, 0], [2, 3, 4]]


def test_bad_input_says_what_is_wrong() -> None:
    bad = item("a", "x", dwell=99)
    with pytest.raises(ValueError, match="dwell_bucket 99"):
        encode_histories([[bad]], vocabs(), 3, "no_signal")
    with pytest.raises(ValueError, match="max_len"):
        encode_histories([[A]], vocabs(), 0, "no_signal")
    with pytest.raises(ValueError, match="weights"):
        encode_examples([example(0, (), "a", "positive", -1.0)], Vocabularies(), 3, "no_signal")
    assert isinstance(ARMS["no_signal"], ArmConfig)


def test_shared_history_objects_encode_like_copies() -> None:
    # consecutive windows share objects; copies (e.g. decoded from JSON) must encode the same
    copies = [tuple(HistoryItem.from_row(h.to_row()) for h in e.history) for e in EXAMPLES]
    shared = encode_histories([e.history for e in EXAMPLES], vocabs(), 3, "feature_only")
    copied = encode_histories(copies, vocabs(), 3, "feature_only")
    for got, want in zip(shared, copied, strict=True):
        assert torch.equal(got, want)
