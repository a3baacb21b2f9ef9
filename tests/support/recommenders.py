"""Stand-in recommenders for tests: the ``top_k`` interface of a trained one, no model."""

from __future__ import annotations

from collections.abc import Sequence

from recoil.core.records import HistoryItem


class FixedOrder:
    """Always ranks ``items`` in the given order, minus each history's items if asked to."""

    def __init__(self, items: Sequence[str]) -> None:
        self.items = tuple(items)

    def top_k(
        self, histories: Sequence[Sequence[HistoryItem]], k: int, exclude_seen: bool = False
    ) -> list[list[str]]:
        out = []
        for history in histories:
            seen = {h.item_id for h in history} if exclude_seen else set()
            out.append([i for i in self.items if i not in seen][:k])
        return out
