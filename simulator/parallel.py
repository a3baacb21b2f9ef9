"""Run one task per arm in forked worker processes, or in this process.

Training dominates an experiment and each arm trains with one CPU thread
(``TrainConfig.num_threads``), so arms run side by side, one per core. Workers
are forked: they inherit the prepared data (hundreds of thousands of training
examples) copy-on-write instead of receiving it pickled; only the arm name
goes in and the (small) result comes back. Results do not depend on the
number of workers: every arm's work is seeded on its own.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
Key = TypeVar("Key", bound=Hashable)

# The task of the current ``map_arms`` call; forked workers inherit it.
_TASK: Callable[[Any], Any] | None = None


def _call(arm: Hashable) -> Any:
    assert _TASK is not None, "worker started without a task"
    return _TASK(arm)


def default_workers(tasks: int) -> int:
    """One worker per core, at most one per task."""
    return max(1, min(tasks, os.cpu_count() or 1))


def map_arms(task: Callable[[Key], T], arms: Sequence[Key], workers: int) -> dict[Key, T]:
    """``{arm: task(arm)}``, computed by ``workers`` forked processes (1: in this process).

    A key is an arm's name, or anything small and picklable that names a task (the
    backtest passes ``(arm, seed)``)."""
    if workers <= 1 or len(arms) <= 1:
        return {arm: task(arm) for arm in arms}
    global _TASK
    if _TASK is not None:
        raise RuntimeError("map_arms is not re-entrant")
    _TASK = task
    try:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = {arm: pool.submit(_call, arm) for arm in arms}
            return {arm: future.result() for arm, future in futures.items()}
    finally:
        _TASK = None


def map_arms_then(
    task: Callable[[Key], T],
    first: Sequence[Key],
    then: Sequence[Key],
    workers: int,
    hand_over: Callable[[dict[Key, T]], None],
) -> dict[Key, T]:
    """``map_arms`` over ``first``, then ``hand_over`` their results, then over ``then``.

    The second round's tasks need something the first made (a stage needs its base's
    trained model): ``hand_over`` puts it where ``task`` reads it, and since the second
    round's workers are forked only after that, each inherits it."""
    results = map_arms(task, first, workers)
    if then:
        hand_over(results)
        results.update(map_arms(task, then, workers))
    return results


def kept_model(model: T | None) -> T:
    """The model a first-round task kept for the second round; a task that should have
    kept one and did not is a bug, said at once rather than as a stage without a base."""
    if model is None:
        raise RuntimeError("a stage's base kept no model")
    return model
