"""A pinned HttpRecommender stops at the first answer from a second snapshot version,
so a probe that would be discarded costs one request more, not the rest of the probe."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import ClassVar

import pytest

from recoil.core.records import EXCLUDE_SEEN, HistoryItem
from serving.requests import parse_batch_body
from simulator.http_recommender import HttpRecommender, VersionChangedError
from tests.support.http_server import serving


class _Swapping(BaseHTTPRequestHandler):
    """POST /recommend/batch: version 1 for the first two requests, then version 2."""

    calls = 0
    body: ClassVar[dict[str, object]] = {}

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).calls += 1
        type(self).body = body
        answer = {
            "model_version": 1 if type(self).calls <= 2 else 2,
            "results": [[{"item_id": "i1"}] for _ in body["histories"]],
        }
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def url() -> Iterator[str]:
    _Swapping.calls = 0
    with serving(_Swapping) as base_url:
        yield base_url


HISTORIES = [[HistoryItem("i0", "c0", "k0", False, 3, 0, 0.0)] for _ in range(5)]


def test_pinned_stops_at_the_second_version(url: str) -> None:
    recommender = HttpRecommender(url, batch_size=1, pinned=True)
    with pytest.raises(VersionChangedError, match=r"\[1, 2\]"):
        recommender.top_k(HISTORIES, k=1)
    assert _Swapping.calls == 3  # not 5
    assert recommender.versions == {1, 2}


def test_unpinned_collects_every_version(url: str) -> None:
    recommender = HttpRecommender(url, batch_size=1)
    assert recommender.top_k(HISTORIES, k=1) == [["i1"]] * 5
    assert recommender.versions == {1, 2}


def test_by_default_it_asks_what_serving_does_for_a_body_without_exclude_seen(url: str) -> None:
    HttpRecommender(url).top_k(HISTORIES[:1], k=1)
    assert _Swapping.body["exclude_seen"] is EXCLUDE_SEEN is True
    assert parse_batch_body({"histories": [[]]}).exclude_seen is EXCLUDE_SEEN
