"""A user id as the last segment of a URL path (``/history/{user_id}``,
``/recommend/{user_id}``), decoded the one way both the stream worker and serving read it.

aiohttp (through yarl) decodes the %-escapes of a path it can decode and keeps the
others as they were, so ``/history/%ff`` reached a handler as the user literally named
"%ff", the same user as ``/history/%25ff``. Reading the segment as sent and decoding it
here makes the two different, and refuses what names no user.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from recoil.core.events import MAX_ID_CHARS


def decode_user_id(segment: str) -> str:
    """The user id a raw path segment names: its %-escapes decoded as UTF-8.

    ValueError with the reason for a segment that names no user: escapes that are not
    UTF-8 (user ids are UTF-8 text), a bare ``.`` or ``..`` (resolving the URL removes
    it: forwarded to another worker, ``/history/..`` became ``/``), and an id longer than
    events allow (``MAX_ID_CHARS``), whose history no worker holds.
    """
    if segment in (".", ".."):
        raise ValueError(
            f"user id {segment!r} is a path segment that URLs remove; escape its dots as %2E"
        )
    shown = segment if len(segment) <= 100 else f"{segment[:100]}..."
    try:
        user_id = unquote_to_bytes(segment).decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"user id {shown!r} is not UTF-8 once its %-escapes are decoded") from None
    if len(user_id) > MAX_ID_CHARS:
        raise ValueError(
            f"user id {shown!r} has {len(user_id)} characters; ids have at most {MAX_ID_CHARS}"
        )
    return user_id
