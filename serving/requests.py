"""Parsing and validating recommend requests: pure, every rejection has a reason.

A rejected request becomes an HTTP 4xx whose JSON body carries ``error`` and
``reason``; nothing here touches the network or the model.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal

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
UNKNOWN_ITEMS = ("ignore", "reject")  # what a POST body's "unknown_items" may ask for
UnknownItems = Literal["ignore", "reject"]


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


def parse_json_body(raw: bytes) -> Any:
    """A request body as JSON; anything the decoder cannot take safely is a 400 with a reason.

    Python's decoder recurses once per nesting level and refuses integers of more than
    4,300 digits; both surface as exceptions other than ``JSONDecodeError``.
    """
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadRequestError("body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise BadRequestError(f"body is not JSON: {exc.msg}") from None
    except RecursionError:
        raise BadRequestError("body is JSON nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of more than sys.get_int_max_str_digits()
        raise BadRequestError(f"body holds a value JSON decoding refused: {exc}") from None


def parse_k(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_K
    try:
        k = int(raw)
    except ValueError:
        raise BadRequestError(f"k must be an integer, got {raw!r}") from None
    return check_k(k)


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
    if cluster is not None and not isinstance(cluster, str):
        raise BadRequestError(f"{where}.cluster_id must be a string or null")
    if not isinstance(disliked, bool | int) or disliked not in (0, 1):
        raise BadRequestError(f"{where}.disliked must be true or false")
    _bucket(dwell, NUM_DWELL_BUCKETS, where, "dwell")
    _bucket(gap, NUM_GAP_BUCKETS, where, "gap")
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
        raise BadRequestError(f"{where}.timestamp must be a finite number")
    return HistoryItem(item, creator, cluster, bool(disliked), dwell, gap, ts)


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
