"""Dynamic micro-batching: concurrent requests share one forward pass and one index search.

Why: a recommendation for one 20-item history is a few hundred small torch ops (a GRU
step by step) and one FAISS search; their fixed cost per call dwarfs the arithmetic,
so 64 histories cost little more than one. Requests that arrive together are
therefore answered together, as model servers (Triton's dynamic batcher,
TF-Serving's batching) do:

* the first request of a batch waits at most ``batch_max_wait_ms`` for others; a
  batch of ``batch_max_size`` histories goes at once;
* while the worker computes one batch, the next one gathers (so under load batches
  grow to what the worker can take, and an idle server answers after at most the
  wait);
* the CPU work runs on one worker thread, so the event loop keeps accepting and
  parsing requests meanwhile.

Answers equal the unbatched ones: a batch asks the snapshot for each history's
ranking as deep as its deepest request, and each request takes its own ``k``. When
the requests differ in ``exclude_seen``, the rankings exclude nothing and go deeper
(``k`` plus the history's distinct items), and each request leaves out its own
history's items. Either way: the same items, in the same order, as
``snapshot.recommend([history], k, exclude_seen)`` (exact search returns the same
prefix at any depth). Scores agree to float32
rounding: BLAS sums 1-3 rows in a different order than larger batches (measured:
at most 2.4e-7 on a user state), as ``POST /recommend/batch`` always did.

Each request names the snapshot that answers it (the one it read when it was
parsed and checked), so a batch that straddles a hot swap runs once per snapshot
and every answer comes from the version it reports. If the snapshot fails on a
batch, each of its requests is retried alone, so one request's error fails only
that request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from recoil.core.checks import MAX_THREADS
from recoil.core.records import HistoryItem
from recoil.core.settings import setting

log = logging.getLogger(__name__)

Ranked = list[tuple[str, float]]  # (item id, score), best first


class Recommender(Protocol):
    """What the batcher calls: serving's ``ServableSnapshot.recommend``."""

    def recommend(
        self, histories: Sequence[Sequence[HistoryItem]], k: int, exclude_seen: bool = ...
    ) -> list[Ranked]: ...


@dataclass(frozen=True)
class BatchConfig:
    """How ``recoil serve`` gathers requests into batches; defaults as measured in
    docs/operations.md (serving)."""

    # histories in one forward pass; a full batch goes without waiting
    batch_max_size: int = setting(64, "most histories answered in one forward pass")
    # how long the first request of a batch waits for others (0: no waiting; batches
    # still form while the worker is busy)
    batch_max_wait_ms: float = setting(
        2.0, "how long (ms) the first request of a batch waits for others to join it"
    )
    # torch and FAISS threads of the recommend worker; 1 leaves a core to the event loop
    worker_threads: int = setting(1, "torch / FAISS threads of the recommend worker thread")

    def __post_init__(self) -> None:
        if self.batch_max_size < 1:
            raise ValueError(f"batch_max_size must be >= 1, got {self.batch_max_size}")
        if not 0 <= self.batch_max_wait_ms <= 1000:
            raise ValueError(
                f"batch_max_wait_ms must be in [0, 1000], got {self.batch_max_wait_ms}"
            )
        if not 1 <= self.worker_threads <= MAX_THREADS:  # torch takes a C int
            raise ValueError(
                f"worker_threads must be in 1..{MAX_THREADS}, got {self.worker_threads}"
            )


@dataclass(frozen=True)
class Query:
    """One history to answer: its top ``k``, leaving out its own items if ``exclude_seen``."""

    history: Sequence[HistoryItem]
    k: int
    exclude_seen: bool

    @property
    def seen(self) -> frozenset[str]:
        return frozenset(h.item_id for h in self.history) if self.exclude_seen else frozenset()


def answer(recommender: Recommender, queries: Sequence[Query]) -> list[Ranked]:
    """Every query's answer from one ``recommend`` call (one forward pass, one search),
    each as ``recommender.recommend([q.history], q.k, q.exclude_seen)[0]`` would give it."""
    if not queries:
        return []
    flags = {q.exclude_seen for q in queries}
    if len(flags) == 1:  # the usual batch: the snapshot leaves out each row's own items
        deepest = max(q.k for q in queries)
        rankings = recommender.recommend([q.history for q in queries], deepest, flags.pop())
        return [ranking[: q.k] for q, ranking in zip(queries, rankings, strict=True)]
    # Mixed: raw rankings as deep as any query needs, each query leaves out its own items.
    seen = [q.seen for q in queries]
    depth = max(q.k + len(s) for q, s in zip(queries, seen, strict=True))
    rankings = recommender.recommend([q.history for q in queries], depth, False)
    answers = []
    for query, excluded, ranking in zip(queries, seen, rankings, strict=True):
        kept = [pair for pair in ranking if pair[0] not in excluded] if excluded else ranking
        answers.append(kept[: query.k])
    return answers


@dataclass(eq=False)
class _Job:
    """One request's histories, the snapshot that answers them, and where the answer goes."""

    recommender: Recommender
    queries: list[Query]
    future: asyncio.Future[list[Ranked]]
    arrived: float  # loop time


@dataclass(eq=False)
class _Batch:
    jobs: list[_Job] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(len(job.queries) for job in self.jobs)


def _run_batch(jobs: list[_Job]) -> list[list[Ranked] | BaseException]:
    """On the worker thread: one ``answer`` per snapshot in the batch; a failed one is
    retried request by request, so each request gets its own answer or its own error."""
    results: list[list[Ranked] | BaseException] = [[] for _ in jobs]
    by_snapshot: dict[int, list[int]] = {}
    for i, job in enumerate(jobs):
        by_snapshot.setdefault(id(job.recommender), []).append(i)
    for members in by_snapshot.values():
        recommender = jobs[members[0]].recommender
        try:
            answers = answer(recommender, [q for i in members for q in jobs[i].queries])
        except Exception:
            log.warning("a batch of %d requests failed; answering each alone", len(members))
            for i in members:
                try:
                    results[i] = answer(recommender, jobs[i].queries)
                except Exception as exc:  # this request's error, not the batch's
                    results[i] = exc
            continue
        start = 0
        for i in members:
            results[i] = answers[start : start + len(jobs[i].queries)]
            start += len(jobs[i].queries)
    return results


class MicroBatcher:
    """Gathers concurrent ``recommend`` calls into batches for one worker thread.

    ``on_batch(histories)`` is told each batch's size (for metrics); ``worker_init``
    runs once on the worker thread before its first batch (thread settings).
    """

    def __init__(
        self,
        config: BatchConfig | None = None,
        on_batch: Callable[[int], None] | None = None,
        worker_init: Callable[[], None] | None = None,
    ) -> None:
        self.config = config or BatchConfig()
        self._on_batch = on_batch
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="recoil-recommend", initializer=worker_init
        )
        self._pending: list[_Job] = []
        self._timer: asyncio.TimerHandle | None = None
        self._busy = False

    async def recommend(self, recommender: Recommender, queries: Sequence[Query]) -> list[Ranked]:
        """The answers to ``queries`` (one request's), from ``recommender``, batched with
        whatever other requests arrive meanwhile."""
        loop = asyncio.get_running_loop()
        job = _Job(recommender, list(queries), loop.create_future(), loop.time())
        self._pending.append(job)
        self._dispatch(loop, expired=False)
        return await job.future

    def _dispatch(self, loop: asyncio.AbstractEventLoop, expired: bool) -> None:
        """Send the oldest pending jobs to the worker when it is free and either they fill
        a batch or the oldest has waited ``batch_max_wait_ms``; else wait for that."""
        self._pending = [job for job in self._pending if not job.future.done()]  # cancelled
        if self._busy or not self._pending:
            return
        max_size = self.config.batch_max_size
        wait = self.config.batch_max_wait_ms / 1000
        deadline = self._pending[0].arrived + wait
        pending_size = sum(len(job.queries) for job in self._pending)
        if not expired and pending_size < max_size and loop.time() < deadline:
            if self._timer is None:
                self._timer = loop.call_at(deadline, self._expire, loop)
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch = _Batch([self._pending[0]])
        for job in self._pending[1:]:
            if batch.size + len(job.queries) > max_size:
                break
            batch.jobs.append(job)
        del self._pending[: len(batch.jobs)]
        self._busy = True
        if self._on_batch is not None:
            self._on_batch(batch.size)
        done = loop.run_in_executor(self._executor, _run_batch, batch.jobs)
        done.add_done_callback(lambda f: self._finish(loop, batch, f))

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        self._dispatch(loop, expired=True)

    def _finish(self, loop: asyncio.AbstractEventLoop, batch: _Batch, done: Any) -> None:
        self._busy = False
        error = done.exception()
        for i, job in enumerate(batch.jobs):
            if job.future.done():  # the client went away
                continue
            result = error if error is not None else done.result()[i]
            if isinstance(result, BaseException):
                job.future.set_exception(result)
            else:
                job.future.set_result(result)
        # Jobs that gathered during the batch have waited already: they go when due.
        self._dispatch(loop, expired=False)

    def close(self) -> None:
        """Stop the worker thread (after the batch it is computing)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._executor.shutdown(wait=True, cancel_futures=True)
