"""Serving's answers as the simulator reads them: a JSON object, or the reason it is not.

The simulator is a client of a server it does not own (a serving process mid-restart, a
proxy's error page, another version): an answer it cannot use must never stop a
simulation. Readers take ``None`` as "no answer" (the user falls back to the logging
policy; a freshness sample polls on) and log the reason.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

# Serving's answers are far below this for any k it takes (at most 500 items); a larger
# body is read no further.
MAX_ANSWER_BYTES = 1 << 20


async def json_object(resp: aiohttp.ClientResponse) -> tuple[dict[str, Any] | None, str]:
    """The JSON object ``resp``'s body holds and "", or None and what the body is instead
    (over ``MAX_ANSWER_BYTES``, not JSON, not an object). Any content type is read."""
    data = await resp.content.read(MAX_ANSWER_BYTES + 1)
    if len(data) > MAX_ANSWER_BYTES:
        return None, f"an answer over {MAX_ANSWER_BYTES} bytes"
    try:
        body = json.loads(data)
    except ValueError as exc:  # not JSON, or not UTF-8
        return None, f"not JSON ({exc})"
    if not isinstance(body, dict):
        return None, f"not a JSON object: {data[:200]!r}"
    return body, ""
