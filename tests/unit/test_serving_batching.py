"""Micro-batching: one call answers many requests exactly as each would be answered alone.

``answer`` is checked against one-by-one ``recommend`` on a deterministic recommender
(exact scores) and on a real snapshot (exact items; scores to float32 rounding, since
BLAS sums 1-3 rows in another order than larger batches). ``MicroBatcher`` is checked
for what reaches the worker: one call for concurrent requests, a full batch at once, a
bounded wait, one call per snapshot, and one request's error kept to that request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from learner.snapshot import load_snapshot
from learner.snapshot_publish import publish_snapshot
from learner.synthetic import synthetic_examples
from recoil.core.records import HistoryItem
from serving.batching import BatchConfig, MicroBatcher, Query, Ranked, answer
from tests.support.snapshots import untrained_parts

torch.set_num_threads(1)


def _item(item: str, disliked: bool = False) -> HistoryItem:
    return HistoryItem(item, f"c{item}", None, disliked, 3, 1, 1.0)


class Scored:
    """Item ``i{j}`` scores ``(j * (7 + len(history))) % 23`` for a history: rankings
    differ by history length; it records each call's batch and depth."""

    def __init__(self, version: int = 1, n: int = 23, fail_on: str | None = None) -> None:
        self.version = version
        self.n = n
        self.fail_on = fail_on
        self.calls: list[tuple[int, int]] = []  # (histories, k)

    def recommend(
        self, histories: Sequence[Sequence[HistoryItem]], k: int, exclude_seen: bool = True
    ) -> list[Ranked]:
        self.calls.append((len(histories), k))
        out = []
        for history in histories:
            if any(h.item_id == self.fail_on for h in history):
                raise ValueError(f"cannot answer a history with {self.fail_on}")
            seen = {h.item_id for h in history} if exclude_seen else set()
            scores = [(f"i{j}", float((j * (7 + len(history))) % self.n)) for j in range(self.n)]
            ranked = sorted((p for p in scores if p[0] not in seen), key=lambda p: (-p[1], p[0]))
            out.append(ranked[:k])
        return out


QUERIES = [
    Query([_item("i1"), _item("i5")], 3, True),
    Query([], 5, True),
    Query([_item("i3")], 23, True),  # deeper than what is left after exclusion
    Query([_item("i2"), _item("i2"), _item("i7", True)], 4, False),
    Query([_item(f"i{j}") for j in range(10)], 1, True),
]


def test_a_batch_answers_each_query_as_alone() -> None:
    recommender = Scored()
    batched = answer(recommender, QUERIES)
    assert recommender.calls == [(5, 23 + 1)]  # one call: mixed exclude_seen, so k + seen deep
    alone = [recommender.recommend([q.history], q.k, q.exclude_seen)[0] for q in QUERIES]
    assert batched == alone
    assert [len(a) for a in batched] == [3, 5, 22, 4, 1]


def test_a_batch_that_excludes_seen_items_throughout_asks_only_its_deepest_k() -> None:
    recommender = Scored()
    queries = [q for q in QUERIES if q.exclude_seen]
    batched = answer(recommender, queries)
    assert recommender.calls == [(4, 23)]
    assert batched == [recommender.recommend([q.history], q.k)[0] for q in queries]


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> object:
    store: Path = tmp_path_factory.mktemp("store")
    examples = synthetic_examples(num_users=12, events_per_user=30, num_items=120, seed=3)
    model, vocabs, meta = untrained_parts(
        examples, "feature_and_labels", dim=16, max_len=10, seed=3
    )
    publish_snapshot(store, model, vocabs, "feature_and_labels", meta, 1, {0: 1})
    return load_snapshot(store)


@pytest.mark.parametrize("mixed", [True, False], ids=["mixed_exclude_seen", "all_exclude_seen"])
def test_a_batch_on_a_real_snapshot_answers_as_one_by_one(snapshot: object, mixed: bool) -> None:
    items = snapshot.item_ids()  # type: ignore[attr-defined]
    queries = [
        Query([_item(items[(3 * b + t) % len(items)], t % 4 == 0) for t in range(b % 13)],
              1 + (5 * b) % 30, b % 3 != 0 or not mixed)
        for b in range(40)
    ]  # fmt: skip
    batched = answer(snapshot, queries)  # type: ignore[arg-type]
    for query, got in zip(queries, batched, strict=True):
        alone = snapshot.recommend([query.history], query.k, query.exclude_seen)[0]  # type: ignore[attr-defined]
        assert [i for i, _ in got] == [i for i, _ in alone]
        assert [s for _, s in got] == pytest.approx([s for _, s in alone], abs=1e-6)
        if query.exclude_seen:
            assert not {i for i, _ in got} & {h.item_id for h in query.history}


def _gather(batcher: MicroBatcher, calls: list[tuple[Scored, list[Query]]]) -> list[object]:
    async def run() -> list[object]:
        tasks = [batcher.recommend(r, q) for r, q in calls]
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    try:
        return asyncio.run(run())
    finally:
        batcher.close()


def test_concurrent_requests_share_one_call_and_get_their_own_answers() -> None:
    recommender = Scored()
    sizes: list[int] = []
    batcher = MicroBatcher(BatchConfig(batch_max_size=64, batch_max_wait_ms=50), sizes.append)
    got = _gather(batcher, [(recommender, [q]) for q in QUERIES])
    assert sizes == [5] and recommender.calls == [(5, 24)]
    assert got == [recommender.recommend([q.history], q.k, q.exclude_seen) for q in QUERIES]


def test_a_full_batch_goes_at_once_and_the_rest_follow() -> None:
    recommender = Scored()
    sizes: list[int] = []
    batcher = MicroBatcher(BatchConfig(batch_max_size=2, batch_max_wait_ms=1000), sizes.append)
    started = time.monotonic()
    got = _gather(batcher, [(recommender, [q]) for q in QUERIES])
    # Two full batches go at once; the fifth request waits its bound (1 s) alone.
    assert sizes == [2, 2, 1]
    assert 0.9 < time.monotonic() - started < 5
    assert got == [recommender.recommend([q.history], q.k, q.exclude_seen) for q in QUERIES]


def test_the_first_request_waits_at_most_the_bound() -> None:
    batcher = MicroBatcher(BatchConfig(batch_max_size=64, batch_max_wait_ms=20))
    started = time.monotonic()
    _gather(batcher, [(Scored(), [QUERIES[0]])])
    assert time.monotonic() - started < 1.0  # 20 ms bound, generous for a loaded machine


def test_each_request_is_answered_by_its_own_snapshot() -> None:
    old, new = Scored(version=1, n=23), Scored(version=2, n=19)
    got = _gather(MicroBatcher(), [(old, [QUERIES[0]]), (new, [QUERIES[0]]), (old, [QUERIES[1]])])
    assert old.calls == [(2, 5)] and new.calls == [(1, 3)]
    assert got == [
        old.recommend([QUERIES[0].history], 3),
        new.recommend([QUERIES[0].history], 3),
        old.recommend([QUERIES[1].history], 5),
    ]


def test_one_requests_error_fails_only_that_request() -> None:
    recommender = Scored(fail_on="bad")
    bad = Query([_item("bad")], 3, True)
    got = _gather(MicroBatcher(), [(recommender, [QUERIES[0]]), (recommender, [bad]),
                                   (recommender, [QUERIES[1], QUERIES[2]])])  # fmt: skip
    assert got[0] == recommender.recommend([QUERIES[0].history], 3)
    assert isinstance(got[1], ValueError)
    assert got[2] == [recommender.recommend([q.history], q.k)[0] for q in QUERIES[1:3]]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"batch_max_size": 0},
        {"batch_max_wait_ms": -1},
        {"worker_threads": 0},
        {"worker_threads": 1 << 31},  # torch's set_num_threads takes a C int
    ],
)
def test_config_refuses_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        BatchConfig(**kwargs)  # type: ignore[arg-type]
