"""A deterministic stand-in snapshot for serving's app tests: no model, known answers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from recoil.core.records import HistoryItem


class RankedSnapshot:
    """Recommends items "i0".."i{n-1}" in order (scores n..1), skipping seen ones; or, with
    ``score``, gives every item that score (a snapshot with corrupt weights)."""

    def __init__(self, version: int = 1, n: int = 20, score: float | None = None) -> None:
        self._version = version
        self.n = n
        self.score = score

    @property
    def version(self) -> int:
        return self._version

    def recommend(
        self, histories: Sequence[Sequence[HistoryItem]], k: int, exclude_seen: bool = True
    ) -> list[list[tuple[str, float]]]:
        out = []
        for history in histories:
            seen = {h.item_id for h in history} if exclude_seen else set()
            ranked = [
                (f"i{j}", float(self.n - j) if self.score is None else self.score)
                for j in range(self.n)
                if f"i{j}" not in seen
            ]
            out.append(ranked[:k])
        return out

    def unknown_items(self, item_ids: Iterable[str]) -> list[str]:
        known = {f"i{j}" for j in range(self.n)}
        return [i for i in item_ids if i not in known]
