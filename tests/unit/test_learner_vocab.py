"""Vocabularies: reserved rows, growth, lookups and JSON round trips."""

from __future__ import annotations

from pathlib import Path

import pytest

from learner.vocab import FIRST_INDEX, PAD_INDEX, UNKNOWN_INDEX, Vocabularies, Vocabulary


def test_reserved_rows_and_growth_in_order_of_first_appearance() -> None:
    vocab = Vocabulary(["b", "a", "b"])
    assert (PAD_INDEX, UNKNOWN_INDEX, FIRST_INDEX) == (0, 1, 2)
    assert len(vocab) == 4 and vocab.num_ids == 2
    assert vocab.index("b") == 2 and vocab.index("a") == 3
    assert vocab.index("never") == UNKNOWN_INDEX
    assert vocab.add(["c", "a", "d"]) == 2
    assert vocab.ids() == ["b", "a", "c", "d"]
    assert vocab.lookup(["d", "x", "b"]).tolist() == [5, 1, 2]
    assert vocab.lookup([]).tolist() == []
    assert vocab.id_of(4) == "c"
    with pytest.raises(IndexError):
        vocab.id_of(UNKNOWN_INDEX)
    assert "c" in vocab and "x" not in vocab


def test_rejects_non_string_ids() -> None:
    with pytest.raises(TypeError, match="strings"):
        Vocabulary([3])  # type: ignore[list-item]


def test_json_round_trip_and_bad_files(tmp_path: Path) -> None:
    vocabs = Vocabularies(Vocabulary(["i1", "i2"]), Vocabulary(["i1"]))
    vocabs.save(tmp_path)
    loaded = Vocabularies.load(tmp_path)
    assert loaded == vocabs
    assert loaded.items.index("i2") == 3 and loaded.creators.index("i2") == UNKNOWN_INDEX
    with pytest.raises(ValueError, match="not a recoil vocabulary"):
        Vocabulary.from_json('{"ids": ["a"]}')
    with pytest.raises(ValueError, match="duplicate"):
        Vocabulary.from_json('{"format": "recoil.vocabulary/1", "ids": ["a", "a"]}')
