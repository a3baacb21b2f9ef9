"""Live user histories from the stream workers' web view (``GET /history/{user_id}``).

The worker that owns the user's partition answers (Faust's table route forwards
the request), so serving needs only one worker's address. Its answer is checked as
strictly as a client's POST body (``serving.requests``), and held to the same size: a
worker that answers something else (a bug, another version's format, a proxy's error
page, a 404 from a wrong ``--history-url``), too much, too slowly or not at all makes the
request a 503 that says what was wrong, within the timeout, never a 500 or a ``NaN`` in
the answer. The worker answers an unseen user with an empty history, never a 404.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from recoil.core.events import MAX_ID_CHARS
from recoil.core.records import HistoryItem
from serving.app import HistoryUnavailableError
from serving.requests import MAX_BODY_BYTES, BadRequestError, parse_history_item, parse_json_body

ERROR_TEXT_BYTES = 200  # of an error answer's body, quoted in the 503's reason


def parse_history_response(body: Any) -> tuple[HistoryItem, ...]:
    """Rows of the worker's JSON answer (``{"history": [[...], ...]}``), oldest first."""
    if not isinstance(body, dict) or not isinstance(body.get("history"), list):
        raise HistoryUnavailableError(f"history service answered {str(body)[:200]!r}")
    try:
        return tuple(parse_history_item(row, i) for i, row in enumerate(body["history"]))
    except BadRequestError as exc:
        raise HistoryUnavailableError(
            f"history service answered an invalid history: {exc.reason}"
        ) from None


def decode_history_response(raw: bytes) -> tuple[HistoryItem, ...]:
    """The worker's answer body, decoded with the same guards as a request body (not UTF-8,
    not JSON, nested too deeply) and then checked row by row."""
    try:
        body = parse_json_body(raw)
    except BadRequestError as exc:
        raise HistoryUnavailableError(f"history service's answer: {exc.reason}") from None
    return parse_history_response(body)


async def _read_body(resp: aiohttp.ClientResponse, url: URL) -> bytes:
    """The answer's body, decompressed, refused once it passes ``MAX_BODY_BYTES``: read
    whole, a runaway or compressed answer would be held in memory before it is checked."""
    too_big = HistoryUnavailableError(
        f"history service at {url} answered more than {MAX_BODY_BYTES} bytes; "
        "a history is far smaller"
    )
    if resp.content_length is not None and resp.content_length > MAX_BODY_BYTES:
        raise too_big
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(64 << 10):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


class HttpHistorySource:
    """Fetch histories over HTTP with one pooled session and a short timeout."""

    def __init__(self, base_url: str, timeout: float = 2.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout
        self.timeout = aiohttp.ClientTimeout(total=timeout)  # connecting to the body's end
        self._session: aiohttp.ClientSession | None = None

    async def history(self, user_id: str) -> tuple[HistoryItem, ...]:
        if len(user_id) > MAX_ID_CHARS:
            # Events refuse longer ids, so no worker holds one's history; asked anyway, the
            # escaped id can pass the worker's 8,190-byte request line (a 400 from aiohttp).
            return ()
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        # Every character but the unreserved ones escaped, dots too: a URL normalises a
        # path segment "." or ".." away (the user "..", unescaped, asked for "/"), and the
        # worker's router decodes "%2E" back to "." without normalising.
        segment = quote(user_id, safe="").replace(".", "%2E")
        url = URL(f"{self.base_url}/history/{segment}", encoded=True)
        try:
            async with self._session.get(url) as resp:
                if resp.status != 200:
                    text = await resp.content.read(ERROR_TEXT_BYTES)
                    raise HistoryUnavailableError(
                        f"history service at {url} answered {resp.status}: "
                        f"{text.decode('utf-8', errors='replace')}"
                    )
                return decode_history_response(await _read_body(resp, url))
        except TimeoutError as exc:
            raise HistoryUnavailableError(
                f"history service at {url} did not answer within {self.timeout_s} s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise HistoryUnavailableError(
                f"history service at {url} could not be reached: {exc}"
            ) from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
