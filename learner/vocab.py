"""String ids <-> dense integer indices for embedding tables.

Index 0 is padding (empty history slots) and index 1 stands for any id the
vocabulary has not seen (at serving time, or for a frozen vocabulary). Real ids
start at ``FIRST_INDEX`` and keep their index forever: the vocabulary only grows,
so rows of a trained embedding table stay valid when new items arrive.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

PAD_INDEX = 0  # empty slots of a padded history
UNKNOWN_INDEX = 1  # ids never added to the vocabulary
FIRST_INDEX = 2  # the first real id
_RESERVED = ("<pad>", "<unk>")
_FORMAT = "recoil.vocabulary/1"


class Vocabulary:
    """A growable mapping from string ids to indices ``FIRST_INDEX, FIRST_INDEX+1, ...``."""

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._index: dict[str, int] = {}
        self._ids: list[str] = list(_RESERVED)
        self.add(ids)

    def __len__(self) -> int:
        """Number of rows an embedding table needs, reserved rows included."""
        return len(self._ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._index

    @property
    def num_ids(self) -> int:
        """Number of real ids (reserved rows excluded)."""
        return len(self._ids) - FIRST_INDEX

    def add(self, ids: Iterable[str]) -> int:
        """Add unseen ids in order of first appearance; returns how many were new."""
        before = len(self._ids)
        index, id_list = self._index, self._ids
        for item_id in ids:
            if item_id not in index:
                if not isinstance(item_id, str):
                    raise TypeError(f"vocabulary ids are strings, got {item_id!r}")
                index[item_id] = len(id_list)
                id_list.append(item_id)
        return len(self._ids) - before

    def index(self, item_id: str) -> int:
        """The index of ``item_id``, or ``UNKNOWN_INDEX`` if it was never added."""
        return self._index.get(item_id, UNKNOWN_INDEX)

    def lookup(self, ids: Sequence[str]) -> np.ndarray:
        """Indices of many ids at once, (len(ids),) int64; unknown ids give ``UNKNOWN_INDEX``."""
        get = self._index.get
        return np.fromiter((get(i, UNKNOWN_INDEX) for i in ids), dtype=np.int64, count=len(ids))

    def id_of(self, index: int) -> str:
        """The id at ``index``; reserved rows have no id."""
        if not FIRST_INDEX <= index < len(self._ids):
            raise IndexError(f"index {index} is not a real id (vocabulary has {len(self)} rows)")
        return self._ids[index]

    def ids(self) -> list[str]:
        """Real ids in index order: ``ids()[k]`` has index ``FIRST_INDEX + k``."""
        return self._ids[FIRST_INDEX:]

    def to_json(self) -> str:
        return json.dumps({"format": _FORMAT, "ids": self.ids()})

    @classmethod
    def from_json(cls, text: str) -> Vocabulary:
        obj = json.loads(text)
        if not isinstance(obj, dict) or obj.get("format") != _FORMAT:
            raise ValueError(f"not a recoil vocabulary (expected format {_FORMAT!r})")
        ids = obj["ids"]
        if len(set(ids)) != len(ids):
            raise ValueError("vocabulary file holds duplicate ids")
        return cls(ids)

    def save(self, path: str | os.PathLike[str]) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Vocabulary:
        return cls.from_json(Path(path).read_text())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._ids == other._ids

    __hash__ = None  # type: ignore[assignment]  # mutable: not hashable

    def __repr__(self) -> str:
        return f"Vocabulary({self.num_ids} ids)"


class Vocabularies:
    """The item and creator vocabularies a model is trained with (kept separate: a
    creator id and an item id may be the same string and mean different things)."""

    ITEMS_FILE = "items.vocab.json"
    CREATORS_FILE = "creators.vocab.json"

    def __init__(self, items: Vocabulary | None = None, creators: Vocabulary | None = None):
        self.items = items if items is not None else Vocabulary()
        self.creators = creators if creators is not None else Vocabulary()

    def save(self, directory: str | os.PathLike[str]) -> None:
        self.items.save(Path(directory) / self.ITEMS_FILE)
        self.creators.save(Path(directory) / self.CREATORS_FILE)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Vocabularies:
        return cls(
            Vocabulary.load(Path(directory) / cls.ITEMS_FILE),
            Vocabulary.load(Path(directory) / cls.CREATORS_FILE),
        )

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Vocabularies)
            and self.items == other.items
            and self.creators == other.creators
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Vocabularies(items={self.items.num_ids}, creators={self.creators.num_ids})"
