"""Which snapshot versions serving's watcher tries to load, newest first (a pure rule).

With nothing served (at start), a bad newest version falls back to older ones, the
store's newest ``FALLBACK_VERSIONS`` in all; once a version is served, only a newer one
is tried, as before. The watcher itself, on a real store: test_serving_bad_snapshot.py.
"""

from __future__ import annotations

import pytest

from serving.app import FALLBACK_VERSIONS, versions_to_try


def test_nothing_in_the_store_is_nothing_to_try() -> None:
    assert versions_to_try(None, [], served=None) == []
    assert versions_to_try(None, [1, 2], served=3) == []


def test_with_none_served_the_newest_then_older_ones_newest_first() -> None:
    assert versions_to_try(4, [1, 2, 3, 4], served=None) == [4, 3, 2, 1]
    assert versions_to_try(1, [1], served=None) == [1]


def test_a_latest_naming_a_missing_version_comes_first_then_the_listed_ones() -> None:
    """``LATEST`` says 7, the directories are 1-3 (a restore gone wrong, say)."""
    assert versions_to_try(7, [1, 2, 3], served=None) == [7, 3, 2, 1]


def test_the_fallback_is_bounded_to_the_newest_few() -> None:
    listed = list(range(1, 21))
    tried = versions_to_try(20, listed, served=None)
    assert tried == list(range(20, 20 - FALLBACK_VERSIONS, -1))
    assert versions_to_try(20, listed, served=None, depth=2) == [20, 19]
    assert 2 <= FALLBACK_VERSIONS <= 10  # a handful: each try loads a whole snapshot


def test_listed_versions_may_come_unsorted_and_repeated() -> None:
    """9: published between reading the newest and listing; the next poll's newest."""
    assert versions_to_try(5, [3, 5, 1, 3, 9], served=None) == [5, 3, 1]


@pytest.mark.parametrize(("newest", "expected"), [(5, [5]), (4, []), (3, [])])
def test_with_a_version_served_only_a_newer_one_is_tried(newest: int, expected: list[int]) -> None:
    """No fallback while serving: a bad newer version is refused and the served one stays."""
    assert versions_to_try(newest, [1, 2, 3, 4, 5], served=4) == expected
