"""Live user histories from the stream workers' web view (``GET /history/{user_id}``).

The worker that owns the user's partition answers (Faust's table route forwards
the request), so serving needs only one worker's address.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp

from recoil.core.records import HistoryItem
from serving.app import HistoryUnavailableError


def parse_history_response(body: Any) -> tuple[HistoryItem, ...]:
    """Rows of the worker's JSON answer (``{"history": [[...], ...]}``), oldest first."""
    if not isinstance(body, dict) or not isinstance(body.get("history"), list):
        raise HistoryUnavailableError(f"history service answered {str(body)[:200]!r}")
    return tuple(HistoryItem.from_row(row) for row in body["history"])


class HttpHistorySource:
    """Fetch histories over HTTP with one pooled session and a short timeout."""

    def __init__(self, base_url: str, timeout: float = 2.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def history(self, user_id: str) -> tuple[HistoryItem, ...]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        url = f"{self.base_url}/history/{quote(user_id, safe='')}"
        try:
            async with self._session.get(url) as resp:
                if resp.status == 404:
                    return ()
                if resp.status != 200:
                    text = await resp.text()
                    raise HistoryUnavailableError(f"{url} answered {resp.status}: {text[:200]}")
                return parse_history_response(await resp.json())
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise HistoryUnavailableError(f"{url}: {exc!r}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
