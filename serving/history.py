"""Live user histories from the stream workers' web view (``GET /history/{user_id}``).

The worker that owns the user's partition answers (Faust's table route forwards
the request), so serving needs only one worker's address. Its answer is checked as
strictly as a client's POST body (``serving.requests``): a worker that answers
something else (a bug, another version's format, a proxy's error page) makes the
request a 503 that says what was wrong, never a 500 or a ``NaN`` in the answer.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from recoil.core.records import HistoryItem
from serving.app import HistoryUnavailableError
from serving.requests import BadRequestError, parse_history_item, parse_json_body


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


class HttpHistorySource:
    """Fetch histories over HTTP with one pooled session and a short timeout."""

    def __init__(self, base_url: str, timeout: float = 2.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def history(self, user_id: str) -> tuple[HistoryItem, ...]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        # Every character but the unreserved ones escaped, dots too: a URL normalises a
        # path segment "." or ".." away (the user "..", unescaped, asked for "/"), and the
        # worker's router decodes "%2E" back to "." without normalising.
        segment = quote(user_id, safe="").replace(".", "%2E")
        url = URL(f"{self.base_url}/history/{segment}", encoded=True)
        try:
            async with self._session.get(url) as resp:
                if resp.status == 404:
                    return ()
                if resp.status != 200:
                    text = await resp.text(errors="replace")
                    raise HistoryUnavailableError(f"{url} answered {resp.status}: {text[:200]}")
                return decode_history_response(await resp.read())
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise HistoryUnavailableError(f"{url}: {exc!r}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
