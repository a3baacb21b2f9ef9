"""Serving's history client (``serving.history.HttpHistorySource``) against stream workers
that misbehave: down, silent, slow, answering too much, or answering the wrong thing.

Each "worker" is a real aiohttp server on 127.0.0.1 (``TestServer``) whose
``GET /history/{user_id}`` misbehaves one way; serving's ``GET /recommend/{user_id}`` in
front of it must answer a 503 ``history_unavailable`` that says what went wrong, within
the client's timeout, and never a 500. (test_serving_robustness.py covers answers that are
not a valid history: bad rows, not JSON, not UTF-8.)
"""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

from aiohttp import web
from aiohttp.test_utils import TestServer

from recoil.broker.embedded import free_port
from recoil.core.events import MAX_ID_CHARS
from serving.history import HttpHistorySource
from serving.requests import MAX_BODY_BYTES
from tests.support.serving_app import fives, serving
from tests.support.strict_json import strict_json

TIMEOUT_S = 0.5  # the client's bound in these tests (2 s by default)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def _worker(answer: Handler) -> AsyncIterator[str]:
    """A real HTTP "stream worker" whose ``GET /history/{user_id}`` is ``answer``; its URL."""
    app = web.Application()
    app.router.add_get("/history/{user_id}", answer)
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("")).rstrip("/")


async def _recommend(base_url: str, user: str = "u1") -> tuple[int, Any, float]:
    """(status, JSON answer, seconds taken) of serving's ``GET /recommend/{user}`` with its
    history from ``base_url``; no 500 may have been counted."""
    history = HttpHistorySource(base_url, timeout=TIMEOUT_S)
    try:
        async with serving(history=history) as (client, registry):
            started = time.monotonic()
            async with client.get(f"/recommend/{user}?k=2") as response:
                answer = strict_json(await response.text())
                status = response.status
            assert fives(registry) == 0.0
            return status, answer, time.monotonic() - started
    finally:
        await history.close()


def _each_unavailable(answers: Sequence[Handler], reason: str) -> list[float]:
    """``GET /recommend/u1`` against a worker answering each of ``answers``: each must be a
    503 whose reason is "history service at URL " + ``reason``; the seconds each took."""

    async def run() -> list[float]:
        took = []
        for answer in answers:
            async with _worker(answer) as base:
                status, body, seconds = await _recommend(base)
            assert status == 503, answer.__name__
            wanted = f"history service at {base}/history/u1 {reason}"
            assert _unavailable(body) == wanted, (answer.__name__, body)
            took.append(seconds)
        return took

    return asyncio.run(run())


def _unavailable(answer: Any) -> str:
    """The reason of a ``history_unavailable`` answer."""
    assert answer["error"] == "history_unavailable", answer
    return str(answer["reason"])


def test_a_worker_that_is_down_is_a_503_that_names_it() -> None:
    base = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    status, answer, _ = asyncio.run(_recommend(base))
    assert status == 503
    assert _unavailable(answer).startswith(
        f"history service at {base}/history/u1 could not be reached: Cannot connect to host"
    ), answer


def test_a_worker_that_is_silent_or_stalls_mid_body_is_a_503_within_the_timeout() -> None:
    async def silent(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def stalls(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = 100
        await response.prepare(request)
        await response.write(b'{"history": [')
        await asyncio.sleep(3600)
        return response

    async def trickles(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        for _ in range(3600):
            await response.write(b" ")  # whitespace: the JSON is never done
            await asyncio.sleep(0.05)
        return response

    seconds = _each_unavailable((silent, stalls, trickles), f"did not answer within {TIMEOUT_S} s")
    assert all(TIMEOUT_S <= s < TIMEOUT_S + 2 for s in seconds), seconds


def test_an_answer_over_the_size_limit_is_refused_without_reading_it_whole() -> None:
    # 8 MiB is what serving takes as a request body, and 8,000 rows of any history.
    huge = 8 * MAX_BODY_BYTES  # 64 MiB of JSON whitespace: valid up to where it stops
    chunk = b" " * (1 << 20)

    async def says_huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = huge
        await response.prepare(request)
        await response.write(b" ")
        await asyncio.sleep(3600)  # the client must not wait for the rest
        return response

    async def streams_huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)  # chunked: no length said up front
        for _ in range(huge // len(chunk)):
            await response.write(chunk)
        return response

    bomb = gzip.compress(b" " * huge, compresslevel=9)  # ~64 KiB that inflate to 64 MiB

    async def gzip_bomb(request: web.Request) -> web.StreamResponse:
        return web.Response(body=bomb, headers={"Content-Type": "application/json",
                                                "Content-Encoding": "gzip"})  # fmt: skip

    seconds = _each_unavailable(
        (says_huge, streams_huge, gzip_bomb),
        f"answered more than {MAX_BODY_BYTES} bytes; a history is far smaller",
    )
    assert all(s < TIMEOUT_S for s in seconds), seconds


def test_a_404_or_an_error_page_is_a_503_with_the_status_not_an_empty_history() -> None:
    # The worker answers every user id it is asked for, an unseen one with an empty
    # history; a 404 means --history-url points at something else (a wrong path or port,
    # another service), and serving answered as if every user were new.
    page = b"<html><body><h1>502 Bad Gateway</h1>" + b"<p>nginx</p>" * 10_000 + b"</body></html>"
    answers: list[tuple[int, bytes, str]] = [
        (404, b"Not Found", "404: Not Found"),
        (502, page, "502: <html><body><h1>502 Bad Gateway</h1><p>nginx</p>"),
    ]

    async def run() -> None:
        for code, text, shown in answers:

            async def answer(request: web.Request, code: int = code, text: bytes = text
                             ) -> web.StreamResponse:  # fmt: skip
                return web.Response(status=code, body=text, content_type="text/html")

            async with _worker(answer) as base:
                status, body, _ = await _recommend(base)
            assert status == 503, code
            reason = _unavailable(body)
            assert reason.startswith(f"history service at {base}/history/u1 answered {shown}")
            assert len(reason) < 400, reason

    asyncio.run(run())


def test_a_path_that_names_no_user_is_a_400_and_the_worker_is_not_asked() -> None:
    """Serving reads the user id as the worker does (``recoil.core.user_paths``): escapes
    that are not UTF-8 were served as the user literally named "%FF", and an id longer
    than events allow (3,000 "!", 9,000 characters escaped: past the worker's 8,190-byte
    request line) was a 503 that blamed the worker."""
    asked: list[str] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        asked.append(request.match_info["user_id"])
        return web.json_response({"history": [["i3", "c1", None, 0, 3, 1, 1700000000.5]]})

    longest = "\U0001f600" * MAX_ID_CHARS  # 12 characters each, escaped: 3,072 in all

    async def run() -> None:
        async with _worker(answer) as base:
            for path, reason in (
                ("%ff", "user id '%FF' is not UTF-8"),  # the client upper-cases escapes
                ("%ED%A0%80", "is not UTF-8"),
                ("!" * 3000, "has 3000 characters; ids have at most 256"),
            ):
                status, body, _ = await _recommend(base, path)
                assert (status, body["error"]) == (400, "bad_user_id"), body
                assert reason in body["reason"], body
            status, body, _ = await _recommend(base, quote(longest, safe=""))
            assert (status, body["history_length"]) == (200, 1), body
            status, body, _ = await _recommend(base, "%25ff")  # the user named "%ff"
            assert status == 200, body

    asyncio.run(run())
    assert asked == [longest, "%ff"]
