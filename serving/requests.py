"""Parsing and validating recommend requests: pure, every rejection has a reason.

A rejected request becomes an HTTP 4xx whose JSON body carries ``error`` and
``reason``; nothing here touches the network or the model. The same item checks
read the live histories the stream workers answer with (``serving.history``), so
whatever reaches the model, from a client or a worker, has passed them.

Bodies over ``LARGE_BODY_BYTES`` are decoded and checked off the event loop
(``serving.app``); they are decoded one value at a time (:func:`parse_json_body`),
so the thread doing it lets the event loop have the GIL between values, and a body
of more values than any request holds is refused after ``MAX_WALKED_VALUES`` of them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from recoil.core.checks import finite_number, utf8_error
from recoil.core.records import (
    EXCLUDE_SEEN,
    HISTORY_COLUMNS,
    NUM_DWELL_BUCKETS,
    NUM_GAP_BUCKETS,
    HistoryItem,
)

MAX_K = 500
DEFAULT_K = 10
MAX_HISTORY = 1000  # longer histories are refused rather than silently cut
MAX_BODY_BYTES = 8 << 20
MAX_BATCH = 1024  # histories per POST /recommend/batch
# Bodies over this are decoded and checked on a thread, not on the event loop. Decoding and
# checking take ~30 us per KiB (a 20-item history is ~0.6 KiB: ~35 us inline, ~125 us through
# a thread), and a thread only helps once a parse outlasts the interpreter's 5 ms switch
# interval (before that, the loop waits for the GIL anyway): 64 KiB is ~2 ms.
LARGE_BODY_BYTES = 64 << 10
# Values a large body's decoder takes one at a time (the body's fields, the entries of its
# lists) before it refuses the body: a request that passes the checks has at most four fields
# and MAX_BATCH histories or MAX_HISTORY items, so this is ample. Why a bound at all: each
# value so taken costs ~2.5 us of Python, and 8 MiB of "[]," (2.8M values) held the one
# parsing thread for 7 s before the 413, while every large body queued behind it.
MAX_WALKED_VALUES = MAX_BATCH + MAX_HISTORY
_HISTORY_FIELDS = frozenset(HISTORY_COLUMNS)
UNKNOWN_ITEMS = ("ignore", "reject")  # what a POST body's "unknown_items" may ask for
UnknownItems = Literal["ignore", "reject"]
# Media types a POST body may declare: JSON, and application/octet-stream, which clients
# send for raw bytes they were not told a type for (aiohttp's ``data=bytes``, as
# bench/serving.py posts).
JSON_MEDIA_TYPES = ("application/json", "application/octet-stream")

_Parsed = TypeVar("_Parsed")


class BadRequestError(ValueError):
    """The request cannot be served as sent; ``reason`` says what to change."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class RecommendRequest:
    history: tuple[HistoryItem, ...]
    k: int
    exclude_seen: bool
    unknown_items: UnknownItems = "ignore"  # "reject": 422 if the snapshot lacks a history item

    @property
    def histories(self) -> tuple[tuple[HistoryItem, ...]]:
        """The one history, as a batch of one (what a batch request's checks read)."""
        return (self.history,)


def parse_json_body(raw: bytes, max_values: int | None = None) -> Any:
    """A request body as JSON; anything the decoder cannot take safely is a 400 with a reason.

    Python's decoder recurses once per nesting level and refuses integers of more than
    4,300 digits; both surface as exceptions other than ``JSONDecodeError``. A body over
    ``LARGE_BODY_BYTES`` is decoded a value at a time (the same value ``json.loads``
    gives; anything the pieces do not take is decoded whole again, for its exact error),
    and refused with a 413 once it has given more than ``max_values`` values (None: no
    bound, for the stream workers' answers, whose histories may be longer than a request's).
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequestError("body is not UTF-8 text") from None
    if len(raw) > LARGE_BODY_BYTES:
        try:
            return _decode_in_pieces(text, max_values)
        except BadRequestError:
            raise  # too many values: decoding it whole is the work the bound saves
        except (ValueError, RecursionError):
            pass  # the whole-text decode below says what is wrong
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequestError(f"body is not JSON: {exc.msg}") from None
    except RecursionError:
        raise BadRequestError("body is JSON nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of more than sys.get_int_max_str_digits()
        raise BadRequestError(f"body holds a value JSON decoding refused: {exc}") from None


_WHITESPACE = re.compile(r"[ \t\n\r]*")  # JSON's whitespace, as json.decoder.WHITESPACE
_DECODER = json.JSONDecoder()
_PIECES_DEPTH = 2  # the values of the body's object and the elements of its lists


def _decode_in_pieces(text: str, max_values: int | None = None) -> Any:
    """``json.loads(text)``, one ``raw_decode`` per value of the top-level object or array
    and per element of the lists in it (one history of a batch, one item of a history).

    Why: the C decoder holds the GIL for a whole call (~0.2 s for a full 7 MB batch), so a
    thread decoding a large body in one call stalls the event loop as much as decoding on
    it would. Between pieces this runs Python code, where the interpreter hands the GIL to
    the loop. Raises ``ValueError`` (or ``RecursionError``) on anything ``json.loads``
    would refuse; the caller decodes the text whole for the exact message. More than
    ``max_values`` pieces (None: any number) is a ``BadRequestError`` (413) there and then.
    """
    walk = _Walk(max_values)
    value, end = _piece(text, _skip(text, 0), _PIECES_DEPTH, walk, "the body")
    if _skip(text, end) != len(text):
        raise ValueError("extra data after the JSON value")
    return value


@dataclass
class _Walk:
    """How many more values one body's decoding may take one at a time (None: no bound)."""

    left: int | None

    def take(self, where: str) -> None:
        if self.left is None:
            return
        self.left -= 1
        if self.left < 0:
            raise BadRequestError(
                f"too many values in {where}: a request holds at most {MAX_BATCH} "
                f"histories or {MAX_HISTORY} history items", 413
            )  # fmt: skip


def _piece(text: str, start: int, depth: int, walk: _Walk, where: str) -> tuple[Any, int]:
    """The JSON value at ``start`` and the index after it; containers above ``depth`` 0 are
    walked here, anything else is one ``raw_decode``. ``where`` names the value in the
    413 that ``walk`` gives when the body holds too many values."""
    opener = text[start : start + 1]
    if depth == 0 or opener not in ("[", "{"):
        return _DECODER.raw_decode(text, start)
    closer = "]" if opener == "[" else "}"
    items: list[Any] = []
    fields: dict[str, Any] = {}
    at = _skip(text, start + 1)
    if text[at : at + 1] == closer:
        return (items if opener == "[" else fields), at + 1
    while True:
        walk.take(where)  # counted per value, not per distinct key: duplicates cost too
        if opener == "{":
            if text[at : at + 1] != '"':
                raise ValueError("expected a property name")
            key, at = _DECODER.raw_decode(text, at)  # a string: it starts with '"'
            at = _skip(text, at)
            if text[at : at + 1] != ":":
                raise ValueError("expected ':'")
            inner = _shown(key) if where == "the body" else f"{where}[{_shown(key)}]"
            # the last of duplicate keys wins, as in json.loads
            fields[key], at = _piece(text, _skip(text, at + 1), depth - 1, walk, inner)
        else:
            item, at = _piece(text, at, depth - 1, walk, f"{where}[{len(items)}]")
            items.append(item)
        at = _skip(text, at)
        separator = text[at : at + 1]
        if separator == closer:
            return (items if opener == "[" else fields), at + 1
        if separator != ",":
            raise ValueError(f"expected ',' or '{closer}'")
        at = _skip(text, at + 1)


def _skip(text: str, at: int) -> int:
    """The index of the first non-whitespace character from ``at``."""
    space = _WHITESPACE.match(text, at)
    return space.end() if space is not None else at


def parse_body(raw: bytes, parse: Callable[[Any], _Parsed]) -> _Parsed:
    """A POST body decoded and checked in one call (what serving runs on a thread for large
    bodies): ``parse`` is :func:`parse_recommend_body` or :func:`parse_batch_body`."""
    return parse(parse_json_body(raw, MAX_WALKED_VALUES))


def check_content_type(header: str | None) -> None:
    """A POST body's ``Content-Type`` must say JSON (``JSON_MEDIA_TYPES`` or a ``+json``
    type), or be absent: the API always took bodies without one and clients rely on it.
    Anything else (a form, text, multipart) is a 415: the client sent something it did
    not mean to, and decoding it as JSON would only give a confusing 400."""
    if header is None:
        return
    media = header.split(";", 1)[0].strip().lower()
    if not media or media in JSON_MEDIA_TYPES:
        return
    if media.startswith("application/") and media.endswith("+json"):
        return
    raise BadRequestError(
        f"Content-Type {_shown(media)} is not JSON; send the body as application/json", 415
    )


def query_value(values: Sequence[str], name: str) -> str | None:
    """The one value of query parameter ``name`` (None when absent). Given twice is a 400:
    which one counts would be a guess (aiohttp's ``get`` takes the first, many proxies and
    frameworks the last), and a client that sends two meant something else."""
    if len(values) > 1:
        raise BadRequestError(
            f"query parameter {name!r} is given {len(values)} times; give it once"
        )
    return values[0] if values else None


def _shown(text: str, limit: int = 40) -> str:
    """``text`` as it goes into a reason: quoted, and cut when long (it comes from a client)."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


_K_DIGITS = re.compile(r"-?[0-9]+")


def parse_k(raw: str | None) -> int:
    """``k`` from a query string: ASCII decimal digits only. ``int()`` also takes ``+5``,
    `` 5``, ``5_0`` and other scripts' digits (Arabic-Indic 3, U+0663), none of which a
    client means as k; a minus sign is let through so that ``-3`` gets the range message."""
    if raw is None or raw == "":
        return DEFAULT_K
    if _K_DIGITS.fullmatch(raw) is None:
        raise BadRequestError(f"k must be an integer in ASCII digits, got {_shown(raw)}")
    if len(raw) > 12:  # out of range whatever the digits; int() of thousands of them is slow
        raise BadRequestError(f"k must be between 1 and {MAX_K}, got {_shown(raw)}")
    return check_k(int(raw))


def check_k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, int):
        raise BadRequestError(f"k must be an integer, got {k!r}")
    if not 1 <= k <= MAX_K:
        raise BadRequestError(f"k must be between 1 and {MAX_K}, got {k}")
    return k


def parse_history_item(obj: object, position: int) -> HistoryItem:
    """One history item from a JSON object (named fields) or a row in HISTORY_COLUMNS order."""
    # Every request parses a whole history here: rows are unpacked as they are (no dict
    # per item), and the checks run in one pass; a value that fails says which field.
    if isinstance(obj, list):
        if len(obj) != len(HISTORY_COLUMNS):
            raise BadRequestError(
                f"history[{position}] must have {len(HISTORY_COLUMNS)} columns {HISTORY_COLUMNS}"
            )
        item, creator, cluster, disliked, dwell, gap, ts = obj
    elif isinstance(obj, dict):
        if not obj.keys() <= _HISTORY_FIELDS:
            # a misspelt field ("dislike") would otherwise be dropped without a word, and
            # with it the user's dislike
            unknown = sorted(_shown(str(name)) for name in obj.keys() - _HISTORY_FIELDS)
            raise BadRequestError(
                f"history[{position}] has unknown fields {', '.join(unknown[:5])}; "
                f"known: {', '.join(HISTORY_COLUMNS)}"
            )
        get = obj.get
        item, creator, cluster = get("item_id"), get("creator_id"), get("cluster_id")
        disliked = get("disliked", False)
        dwell, gap = get("dwell_bucket", NUM_DWELL_BUCKETS - 1), get("gap_bucket", 0)
        ts = get("timestamp", 0.0)
    else:
        raise BadRequestError(
            f"history[{position}] must be an object or a row, got {type(obj).__name__}"
        )
    where = f"history[{position}]"
    for name, value in (("item_id", item), ("creator_id", creator)):
        if not isinstance(value, str) or not value:
            raise BadRequestError(f"{where}.{name} must be a non-empty string")
        _check_text(value, where, name)
    if cluster is not None:
        if not isinstance(cluster, str):
            raise BadRequestError(f"{where}.cluster_id must be a string or null")
        _check_text(cluster, where, "cluster_id")
    if not isinstance(disliked, bool | int) or disliked not in (0, 1):
        raise BadRequestError(f"{where}.disliked must be true or false")
    _bucket(dwell, NUM_DWELL_BUCKETS, where, "dwell")
    _bucket(gap, NUM_GAP_BUCKETS, where, "gap")
    timestamp = finite_number(ts)
    if timestamp is None:
        raise BadRequestError(f"{where}.timestamp must be a finite number")
    return HistoryItem(item, creator, cluster, bool(disliked), dwell, gap, timestamp)


def _check_text(value: str, where: str, name: str) -> None:
    """An id must be Unicode text: JSON's ``\\ud800`` escape decodes to a lone surrogate,
    which no UTF-8 text holds (the stream workers refuse such events as ``invalid_utf8``).
    Let through, it came back in a 422's reason as the same escape, which strict JSON
    parsers refuse, so the client could not read why it was refused."""
    if utf8_error(value) is not None:
        raise BadRequestError(f"{where}.{name} holds a lone surrogate, which is not Unicode text")


def _bucket(value: object, count: int, where: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < count:
        raise BadRequestError(f"{where}.{name}_bucket must be an integer in [0, {count - 1}]")
    return value


def _check_fields(body: Any, items: str) -> None:
    """A POST body is a JSON object of ``items``, ``k`` and ``exclude_seen``, nothing else."""
    if not isinstance(body, dict):
        raise BadRequestError(f"body must be a JSON object with a '{items}' list")
    unknown = body.keys() - {items, "k", "exclude_seen", "unknown_items"}
    if unknown:
        raise BadRequestError(f"unknown fields {sorted(unknown)}")


def _exclude_seen(body: dict[str, Any]) -> bool:
    exclude_seen = body.get("exclude_seen", EXCLUDE_SEEN)
    if not isinstance(exclude_seen, bool):
        raise BadRequestError("'exclude_seen' must be true or false")
    return exclude_seen


def _unknown_items(body: dict[str, Any]) -> UnknownItems:
    value = body.get("unknown_items", "ignore")
    if value == "ignore":
        return "ignore"
    if value == "reject":
        return "reject"
    raise BadRequestError(f"'unknown_items' must be one of {list(UNKNOWN_ITEMS)}, got {value!r}")


def parse_recommend_body(body: Any) -> RecommendRequest:
    """The body of ``POST /recommend``: ``{"history": [...], "k": 10, "exclude_seen": true,
    "unknown_items": "ignore"}`` (``"reject"``: refuse items the snapshot does not know)."""
    _check_fields(body, "history")
    history = body.get("history")
    if not isinstance(history, list):
        raise BadRequestError("'history' must be a list of history items (oldest first)")
    if len(history) > MAX_HISTORY:
        raise BadRequestError(
            f"'history' has {len(history)} items, the limit is {MAX_HISTORY}", 413
        )
    exclude_seen = _exclude_seen(body)
    items = tuple(parse_history_item(obj, i) for i, obj in enumerate(history))
    k = check_k(body.get("k", DEFAULT_K))
    return RecommendRequest(items, k, exclude_seen, _unknown_items(body))


@dataclass(frozen=True)
class BatchRequest:
    histories: tuple[tuple[HistoryItem, ...], ...]
    k: int
    exclude_seen: bool
    unknown_items: UnknownItems = "ignore"


def parse_batch_body(body: Any) -> BatchRequest:
    """``POST /recommend/batch``: ``{"histories": [[...], ...], "k": 10, "exclude_seen": true}``.

    One snapshot answers the whole batch, so a counterfactual probe's branches are
    always compared on the same model version.
    """
    _check_fields(body, "histories")
    histories = body.get("histories")
    if not isinstance(histories, list) or not histories:
        raise BadRequestError("'histories' must be a non-empty list of histories")
    if len(histories) > MAX_BATCH:
        raise BadRequestError(
            f"'histories' has {len(histories)} entries, the limit is {MAX_BATCH}", 413
        )
    parsed = []
    for b, history in enumerate(histories):
        try:
            one = parse_recommend_body({"history": history})
        except BadRequestError as exc:
            raise BadRequestError(f"histories[{b}]: {exc.reason}", exc.status) from None
        parsed.append(one.history)
    exclude_seen = _exclude_seen(body)
    k = check_k(body.get("k", DEFAULT_K))
    return BatchRequest(tuple(parsed), k, exclude_seen, _unknown_items(body))
