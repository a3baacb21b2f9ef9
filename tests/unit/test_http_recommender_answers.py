"""Whatever answers on the serving port, the prober gets a ServingError (which it logs
and retries), never a crash: a loop run once had the simulator's own Prometheus
endpoint on the port meant for a serving process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import ClassVar

import pytest
from prometheus_client import CollectorRegistry, start_http_server

from recoil.core.records import HistoryItem
from simulator.http_recommender import HttpRecommender, ServingError
from tests.support.http_server import serving

HISTORIES = [[HistoryItem("i0", "c0", "k0", False, 3, 0, 0.0)]]


@pytest.fixture
def metrics_url() -> Iterator[str]:
    """A real Prometheus exporter: text on every path, /snapshot included."""
    server, thread = start_http_server(0, addr="127.0.0.1", registry=CollectorRegistry())
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_a_metrics_endpoint_is_not_a_serving_api(metrics_url: str) -> None:
    recommender = HttpRecommender(metrics_url)
    with pytest.raises(ServingError, match="/snapshot: not JSON"):
        recommender.snapshot_version()
    with pytest.raises(ServingError, match="/recommend/batch: "):
        recommender.top_k(HISTORIES, k=5)


class _Answering(BaseHTTPRequestHandler):
    """Answers every request with ``answer`` as JSON, status 200."""

    answer: ClassVar[object] = None

    def _reply(self) -> None:
        if self.headers.get("Content-Length"):
            self.rfile.read(int(self.headers["Content-Length"]))
        data = json.dumps(type(self).answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._reply()

    def do_POST(self) -> None:
        self._reply()

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def json_url() -> Iterator[str]:
    with serving(_Answering) as base_url:
        yield base_url


@pytest.mark.parametrize(
    "answer",
    [[1, 2], {"other": 1}, {"version": "v1"}, {"version": None}, "text"],
    ids=["list", "no-version", "not-a-number", "null", "string"],
)
def test_json_that_is_not_a_snapshot_answer(json_url: str, answer: object) -> None:
    _Answering.answer = answer
    with pytest.raises(ServingError, match="/snapshot: not a"):
        HttpRecommender(json_url).snapshot_version()


@pytest.mark.parametrize(
    "answer",
    [
        {"results": []},
        {"model_version": 1},
        {"model_version": 1, "results": [[{"id": 1}]]},
        {"model_version": 1, "results": 3},
    ],
    ids=["no-version", "no-results", "no-item-id", "results-not-a-list"],
)
def test_json_that_is_not_a_batch_answer(json_url: str, answer: object) -> None:
    _Answering.answer = answer
    with pytest.raises(ServingError, match="/recommend/batch: not a batch answer"):
        HttpRecommender(json_url).top_k(HISTORIES, k=5)


def test_a_good_answer_still_reads(json_url: str) -> None:
    _Answering.answer = {"version": 7, "model_version": 7, "results": [[{"item_id": "i9"}]]}
    recommender = HttpRecommender(json_url)
    assert recommender.snapshot_version() == 7
    assert recommender.top_k(HISTORIES, k=5) == [["i9"]]
    assert recommender.versions == {7}
