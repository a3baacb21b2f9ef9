"""The recommend API against what clients and upstreams get wrong: never a 500, never
invalid JSON, never a stuck request or a stalled event loop.

A real aiohttp server (``TestServer``) over a small deterministic snapshot, as in
test_serving_app.py; the live-history cases put a real HTTP "stream worker" (another
``TestServer``) behind serving's ``HttpHistorySource``. Clients that misbehave at the
socket level (a body cut short, a body that stalls) are raw asyncio streams.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from recoil.core.records import HistoryItem
from serving.app import (
    CLIENT_CLOSED_REQUEST,
    LARGE_ANSWER_ITEMS,
    _batch_answer,
    _items,
)
from serving.config import ServeConfig
from serving.history import HttpHistorySource, parse_history_response
from serving.requests import MAX_BATCH, MAX_BODY_BYTES, parse_batch_body, parse_body
from tests.support.ranked import RankedSnapshot
from tests.support.serving_app import fives, serving
from tests.support.strict_json import strict_json


def _count(registry: CollectorRegistry, endpoint: str, status: int | str) -> float:
    labels = {"endpoint": endpoint, "status": str(status)}
    return registry.get_sample_value("recoil_serving_requests_total", labels) or 0.0


async def _answer(client: TestClient[Any, Any], method: str, path: str, **kw: Any) -> Any:
    """(status, JSON body read strictly) of one request."""
    async with client.request(method, path, **kw) as response:
        return response.status, strict_json(await response.text())


# --- 1: numbers in history items -------------------------------------------------------

HUGE = b"1" + b"0" * 400  # 10**400: JSON allows it, float() overflows on it

HUGE_NUMBERS = [
    ("/recommend", b'{"history": [["i1", "c", null, false, 3, 1, ' + HUGE + b"]], \"k\": 3}",
     "history[0].timestamp must be a finite number"),
    ("/recommend", b'{"history": [{"item_id": "i1", "creator_id": "c", "timestamp": -' + HUGE
     + b"}]}", "history[0].timestamp must be a finite number"),
    ("/recommend/batch", b'{"histories": [[], [["i1", "c", null, 0, 3, 1, ' + HUGE + b"]]]}",
     "histories[1]: history[0].timestamp must be a finite number"),
    ("/recommend", b'{"history": [["i1", "c", null, ' + HUGE + b", 3, 1, 5]]}",
     "history[0].disliked must be true or false"),
    ("/recommend", b'{"history": [["i1", "c", null, 0, ' + HUGE + b", 1, 5]]}",
     "history[0].dwell_bucket must be an integer in [0, 5]"),
    ("/recommend", b'{"history": [["i1", "c", null, 0, 3, true, 5]]}',
     "history[0].gap_bucket must be an integer in [0, 7]"),
    ("/recommend", b'{"history": [["i1", "c", null, 0, 3, 1, NaN]]}',
     "history[0].timestamp must be a finite number"),
    ("/recommend", b'{"history": [], "k": ' + HUGE + b"}", "k must be between 1 and 500, got "),
]  # fmt: skip


def test_numbers_out_of_float_range_are_a_400_with_the_field_named() -> None:
    async def run() -> None:
        async with serving() as (client, registry):
            for path, body, reason in HUGE_NUMBERS:
                status, answer = await _answer(client, "POST", path, data=body)
                assert (status, answer["error"]) == (400, "bad_request"), answer
                assert answer["reason"].startswith(reason), answer
            assert fives(registry) == 0.0

    asyncio.run(run())


# --- 2: live histories the worker gets wrong ---------------------------------------------

GOOD_ROW = ["i3", "c1", None, 0, 3, 1, 1700000000.5]
# user -> (status, body the "worker" answers with, fragment of serving's 503 reason)
WORKER_ANSWERS: dict[str, tuple[int, bytes, str]] = {
    "short-row": (200, b'{"history": [["i74", "c1"]]}', "history[0] must have 7 columns"),
    "dwell-text": (200, b'{"history": [["i1", "c1", null, 0, "x", 1, 5.0]]}',
                   "history[0].dwell_bucket must be an integer in [0, 5]"),
    "dwell-99": (200, b'{"history": [["i1", "c1", null, 0, 99, 1, 5.0]]}',
                 "history[0].dwell_bucket must be an integer in [0, 5]"),
    "nan-time": (200, json.dumps({"history": [GOOD_ROW, ["i2", "c", None, 0, 3, 1, float("nan")]]})
                 .encode(), "history[1].timestamp must be a finite number"),
    "inf-time": (200, b'{"history": [["i1", "c1", null, 0, 3, 1, Infinity]]}',
                 "history[0].timestamp must be a finite number"),
    "huge-time": (200, b'{"history": [["i1", "c1", null, 0, 3, 1, ' + HUGE + b"]]}",
                  "history[0].timestamp must be a finite number"),
    "not-json": (200, b"<html>proxy error</html>", "body is not JSON"),
    "not-utf8": (200, b'{"history": ["\xff"]}', "body is not UTF-8 text"),
    "no-history": (200, b'{"rows": []}', "history service answered"),
    "error-not-utf8": (500, b"\xff\xfe oops", "answered 500"),
}  # fmt: skip


@asynccontextmanager
async def _worker(
    answer: Callable[[web.Request], Awaitable[web.Response]],
) -> AsyncIterator[HttpHistorySource]:
    """A real HTTP "stream worker" whose ``GET /history/{user_id}`` is ``answer``, and
    serving's client of it."""
    worker_app = web.Application()
    worker_app.router.add_get("/history/{user_id}", answer)
    async with TestServer(worker_app) as upstream:
        history = HttpHistorySource(str(upstream.make_url("")))
        try:
            yield history
        finally:
            await history.close()


def test_a_malformed_worker_history_is_a_503_with_the_reason_never_a_500() -> None:
    async def answer(request: web.Request) -> web.Response:
        user = request.match_info["user_id"]
        if user == "ok":
            return web.json_response({"user_id": user, "history": [GOOD_ROW]})
        status, body, _ = WORKER_ANSWERS[user]
        return web.Response(status=status, body=body, content_type="application/json")

    async def run() -> None:
        async with _worker(answer) as history, serving(history=history) as (client, registry):
            for user, (_, _, fragment) in WORKER_ANSWERS.items():
                status, body = await _answer(client, "GET", f"/recommend/{user}?k=2")
                assert (status, body["error"]) == (503, "history_unavailable"), user
                assert fragment in body["reason"], (user, body)
            status, body = await _answer(client, "GET", "/recommend/ok?k=2")
            assert status == 200 and body["history_length"] == 1
            assert body["last_event_timestamp"] == 1700000000.5
            assert _count(registry, "/recommend/{user_id}", 503) == len(WORKER_ANSWERS)
            assert fives(registry) == 0.0

    asyncio.run(run())


def test_each_user_id_reaches_the_worker_as_itself() -> None:
    # "." and ".." are path segments a URL normalises away: unescaped, the user ".." asked
    # the worker for "/" and never got a live history
    users = [".", "..", "../x", "a/..", "%2E", "a.b", "ü", "?k=1", "a b", "#"]

    async def answer(request: web.Request) -> web.Response:
        user = request.match_info["user_id"]
        row = [f"seen-by-{user}", "c1", None, 0, 3, 1, 1700000000.5]
        return web.json_response({"user_id": user, "history": [row]})

    async def run() -> None:
        async with _worker(answer) as history:
            for user in users:
                items = await history.history(user)
                assert [item.item_id for item in items] == [f"seen-by-{user}"], user

    asyncio.run(run())


def test_history_rows_are_checked_as_request_items_are() -> None:
    assert parse_history_response({"history": [GOOD_ROW]}) == (
        HistoryItem("i3", "c1", None, False, 3, 1, 1700000000.5),
    )
    from serving.app import HistoryUnavailableError

    with pytest.raises(HistoryUnavailableError, match=r"history\[0\]\.disliked must be"):
        parse_history_response({"history": [["i1", "c1", None, "yes", 3, 1, 5.0]]})


# --- 3: clients that go away or stall mid-body ------------------------------------------

HEAD = (
    b"POST /recommend HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
    b"Content-Length: 100\r\n\r\n"
)


def test_a_client_that_goes_away_mid_body_is_a_499_not_a_500_or_an_error_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def run() -> None:
        async with serving() as (client, registry):
            assert client.server.port is not None
            _, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
            writer.write(HEAD + b'{"hist')  # 6 of the 100 bytes promised
            await writer.drain()
            await asyncio.sleep(0.1)
            writer.close()
            deadline = time.monotonic() + 10
            while _count(registry, "/recommend", CLIENT_CLOSED_REQUEST) == 0:
                assert time.monotonic() < deadline, "the closed request was never counted"
                await asyncio.sleep(0.02)
            assert fives(registry) == 0.0
            # and serving goes on
            status, _ = await _answer(client, "POST", "/recommend", json={"history": []})
            assert status == 200

    with caplog.at_level(logging.INFO):
        asyncio.run(run())
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


def test_a_body_that_stalls_gets_a_408_within_the_body_timeout() -> None:
    async def run() -> None:
        async with serving(config=ServeConfig(body_timeout_s=0.5)) as (client, registry):
            assert client.server.port is not None
            reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
            started = time.monotonic()
            writer.write(HEAD + b'{"hist')  # and nothing more, connection kept open
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            waited = time.monotonic() - started
            lines = head.decode().split("\r\n")
            headers = dict(line.split(": ", 1) for line in lines[1:] if line)
            body = await reader.readexactly(int(headers["Content-Length"]))
            writer.close()
            assert lines[0] == "HTTP/1.1 408 Request Timeout"
            assert headers["Connection"] == "close"  # the rest of the body may yet come
            answer = strict_json(body.decode())
            assert answer["error"] == "bad_request"
            assert answer["reason"] == (
                "the body did not arrive in full within 0.5 s (Content-Length promised 100 bytes)"
            )
            assert 0.5 <= waited < 10
            assert _count(registry, "/recommend", 408) == 1 and fives(registry) == 0.0

    asyncio.run(run())


# --- 4: a full batch does not stall the event loop ----------------------------------------


def test_healthz_answers_while_a_full_batch_is_parsed_and_answered() -> None:
    row = ["i1", "c", None, 0, 1, 0, 1]
    # The largest batch: 1024 histories of 300 rows (~7 MB), answered 500 deep (~19 MB).
    raw = json.dumps({"histories": [[row] * 300] * MAX_BATCH, "k": 500}, separators=(",", ":"))
    body = raw.encode()
    assert len(body) <= MAX_BODY_BYTES
    # What parsing this body costs on this machine now (it took ~1 s on the 2-core box).
    started = time.perf_counter()
    parse_body(body, parse_batch_body)
    parse_seconds = time.perf_counter() - started

    async def run() -> tuple[list[float], int, int]:
        async with serving(RankedSnapshot(n=600)) as (client, _):
            posted = asyncio.ensure_future(client.post("/recommend/batch", data=body))
            # Client and server share this loop, so anything that blocks it shows up as a
            # long gap between two consecutive health answers, wherever the block falls.
            gaps = []
            last = time.perf_counter()
            while not posted.done():
                async with client.get("/healthz") as health:
                    assert health.status == 200
                now = time.perf_counter()
                gaps.append(now - last)
                last = now
                await asyncio.sleep(0.005)
            response = await posted
            results = (await response.json())["results"]
            assert {len(one) for one in results} == {500}
            assert results[0][:2] == [{"item_id": "i0", "score": 600.0},
                                      {"item_id": "i2", "score": 598.0}]  # fmt: skip
            return gaps, response.status, len(results)

    gaps, status, results = asyncio.run(run())
    assert (status, results) == (200, MAX_BATCH)
    assert len(gaps) >= 3, "the batch was answered before /healthz could be asked"
    # Parsed on the loop, one gap would be the whole parse (and writing the answer there
    # adds ~0.5 s more). Off it, what is left is mostly the cyclic GC's passes over the
    # request's objects (~0.1-0.2 s measured on 2 cores), which hold the GIL.
    assert max(gaps) < parse_seconds / 2, (max(gaps), parse_seconds)


def test_a_large_batch_answer_is_the_json_a_small_one_would_be() -> None:
    snapshot = RankedSnapshot(9, n=600)
    ranked = snapshot.recommend([[], [HistoryItem("i1", "c", None, False, 1, 0, 1.0)]], 500)
    head = {"model_version": 9, "unknown_items": 0}
    whole: dict[str, Any] = {**head, "results": [_items(snapshot, one) for one in ranked]}
    assert _batch_answer(snapshot, head, ranked) == json.dumps(whole).encode()
    assert sum(len(one) for one in ranked) == 1000  # under LARGE_ANSWER_ITEMS: inline

    async def run() -> None:
        async with serving(snapshot) as (client, _):
            histories = [[["i1", "c", None, 0, 1, 0, 1]]] * 12  # 12 * 500 items: the thread
            assert LARGE_ANSWER_ITEMS < 12 * 500
            status, answer = await _answer(client, "POST", "/recommend/batch",
                                           json={"histories": histories, "k": 500})  # fmt: skip
            assert status == 200
            assert answer == {"model_version": 9, "unknown_items": 0,
                              "results": [whole["results"][1]] * 12}  # fmt: skip

    asyncio.run(run())


# --- 7: k, strictly -------------------------------------------------------------------------

K_REFUSED = [
    ("k=5_0", "k must be an integer in ASCII digits, got '5_0'"),
    ("k=%D9%A3", "k must be an integer in ASCII digits, got '\u0663'"),
    ("k=%205", "k must be an integer in ASCII digits, got ' 5'"),
    ("k=%2B5", "k must be an integer in ASCII digits, got '+5'"),
    ("k=3&k=abc", "query parameter 'k' is given 2 times; give it once"),
    ("k=abc&k=3", "query parameter 'k' is given 2 times; give it once"),
    ("k=3&k=3", "query parameter 'k' is given 2 times; give it once"),
]


def test_k_is_ascii_digits_given_once() -> None:
    async def run() -> None:
        holder_history = _OneUser()
        async with serving(history=holder_history) as (client, _):
            for query, reason in K_REFUSED:
                status, answer = await _answer(client, "GET", f"/recommend/u1?{query}")
                assert (status, answer["reason"]) == (400, reason), query
            status, answer = await _answer(client, "GET", "/recommend/u1?k=02")
            assert status == 200 and len(answer["items"]) == 2

    asyncio.run(run())


class _OneUser:
    async def history(self, user_id: str) -> tuple[HistoryItem, ...]:
        return (HistoryItem("i0", "c0", None, False, 5, 0, 100.0),)


# --- 8 and Content-Type: every error in the JSON shape ----------------------------------


def test_unknown_paths_and_methods_get_json_errors_under_one_metrics_label() -> None:
    async def run() -> None:
        async with serving() as (client, registry):
            status, answer = await _answer(client, "GET", "/nope/" + "x" * 5000)
            assert (status, answer["error"]) == (404, "not_found")
            assert answer["reason"].startswith("no endpoint at /nope/xxx")
            assert "POST /recommend/batch" in answer["reason"] and len(answer["reason"]) < 600
            for method, path, allowed in [
                ("GET", "/recommend", "POST"),
                ("DELETE", "/recommend/batch", "GET,HEAD,POST"),  # GET: the user "batch"
                ("PUT", "/snapshot", "GET,HEAD"),
                ("POST", "/healthz", "GET,HEAD"),
            ]:
                async with client.request(method, path) as response:
                    assert response.status == 405 and response.headers["Allow"] == allowed
                    answer = strict_json(await response.text())
                assert answer["error"] == "method_not_allowed"
                assert answer["reason"].startswith(f"{method} is not allowed on {path}; use ")
            assert _count(registry, "unmatched", 404) == 1
            assert _count(registry, "unmatched", 405) == 4

    asyncio.run(run())


def test_a_body_that_says_it_is_not_json_is_a_415() -> None:
    async def run() -> None:
        async with serving() as (client, registry):
            body = b'{"history": [], "k": 2}'
            for media in ("text/plain", "application/x-www-form-urlencoded"):
                headers = {"Content-Type": media}
                for path in ("/recommend", "/recommend/batch"):
                    status, answer = await _answer(client, "POST", path, data=body,
                                                   headers=headers)  # fmt: skip
                    assert status == 415
                    assert answer["reason"] == (
                        f"Content-Type {media!r} is not JSON; send the body as application/json"
                    )
            # JSON, JSON with a charset, and no Content-Type at all are taken
            for headers in ({"Content-Type": "application/json; charset=utf-8"}, {}):
                status, answer = await _answer(client, "POST", "/recommend", data=body,
                                               headers=headers,
                                               skip_auto_headers=["Content-Type"])  # fmt: skip
                assert status == 200 and len(answer["items"]) == 2
            assert _count(registry, "/recommend", 415) == 2

    asyncio.run(run())


def test_a_snapshot_scoring_nan_is_a_500_in_valid_json() -> None:
    async def run() -> None:
        async with serving(RankedSnapshot(4, score=float("nan"))) as (client, registry):
            for path, body in [("/recommend", {"history": []}),
                               ("/recommend/batch", {"histories": [[]]})]:  # fmt: skip
                status, answer = await _answer(client, "POST", path, json=body)
                assert (status, answer["error"]) == (500, "bad_snapshot")
                assert answer["reason"].startswith("snapshot version 4 gave item 'i0' the score")
            assert _count(registry, "/recommend", 500) == 1

    asyncio.run(run())
