"""The interaction event: the one record every producer writes to ``interactions``.

Wire format: a UTF-8 JSON object, keyed in Kafka by ``user_id``.

    event_id               str    unique per event; producer retries reuse it
    user_id                str
    item_id                str
    creator_id             str
    cluster_id             str | null   content cluster, when known (optional)
    timestamp              float  seconds since the Unix epoch, when the user acted
    surface                str    where the item was shown (e.g. "home", "immersive")
    dwell_seconds          float  >= 0, time spent on the item
    item_duration_seconds  float  >= 0, the item's length; 0 means unknown
    liked                  bool
    disliked               bool
    dismissed              bool
    schema_version         int    must be a version this code knows (1)

``parse_event`` validates strictly and never raises on bad input: it returns
either an :class:`InteractionEvent` or an :class:`Invalid` with a short
``code`` (a metric label) and a ``reason`` a person can act on.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from recoil.core.checks import finite_number, utf8_error

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = frozenset({1})
MAX_EVENT_BYTES = 8 * 1024  # a real event is ~300 bytes; anything far larger is abuse
MAX_ID_CHARS = 256

_STR_FIELDS = ("event_id", "user_id", "item_id", "creator_id", "surface")
_NUM_FIELDS = ("timestamp", "dwell_seconds", "item_duration_seconds")
_BOOL_FIELDS = ("liked", "disliked", "dismissed")
REQUIRED_FIELDS = frozenset((*_STR_FIELDS, *_NUM_FIELDS, *_BOOL_FIELDS, "schema_version"))
OPTIONAL_FIELDS = frozenset({"cluster_id"})
# Every Invalid.code: the DLQ header ``recoil.dlq.code`` and the ``reason`` label of
# ``recoil_stream_invalid_events_total`` (monitoring/catalogue.py imports this list).
INVALID_CODES = (
    "oversized",
    "invalid_utf8",
    "invalid_json",
    "not_an_object",
    "unknown_schema_version",
    "missing_field",
    "unknown_field",
    "wrong_type",
    "empty_id",
    "negative_dwell",
    "negative_duration",
    "bad_timestamp",
    "not_finite",
    # Given by the stream worker (streams/processor.py), not by parse_event: a record
    # keyed by another user (or not at all), and an event whose processing raised.
    "wrong_key",
    "processing_error",
)


@dataclass(frozen=True, slots=True)
class InteractionEvent:
    """One user's reaction to one shown item."""

    event_id: str
    user_id: str
    item_id: str
    creator_id: str
    timestamp: float
    surface: str
    dwell_seconds: float
    item_duration_seconds: float
    liked: bool
    disliked: bool
    dismissed: bool
    cluster_id: str | None = None
    schema_version: int = SCHEMA_VERSION

    @property
    def dwell_ratio(self) -> float | None:
        """dwell / duration, or None when the duration is unknown."""
        if self.item_duration_seconds <= 0:
            return None
        return self.dwell_seconds / self.item_duration_seconds

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Invalid:
    """Why an event was rejected: ``code`` is a metric label, ``reason`` is for people."""

    code: str
    reason: str


def parse_event(raw: bytes | bytearray | memoryview) -> InteractionEvent | Invalid:
    """Decode and validate one event from its wire bytes."""
    if len(raw) > MAX_EVENT_BYTES:
        return Invalid("oversized", f"event is {len(raw)} bytes, the limit is {MAX_EVENT_BYTES}")
    obj = decode_json(raw, "event")
    return obj if isinstance(obj, Invalid) else validate_event(obj)


def decode_json(raw: bytes | bytearray | memoryview, what: str) -> object | Invalid:
    """One JSON value from UTF-8 bytes, or why not (``what`` names it in the reason):
    bytes that are not UTF-8, text that is not JSON, nesting too deep for the decoder
    and a number it cannot read are reasons, never exceptions."""
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        return Invalid("invalid_utf8", f"{what} is not UTF-8: {exc.reason} at byte {exc.start}")
    try:
        obj: object = json.loads(text)
    except json.JSONDecodeError as exc:
        return Invalid("invalid_json", f"{what} is not JSON: {exc.msg} at char {exc.pos}")
    except RecursionError:
        return Invalid("invalid_json", f"{what} JSON is nested too deeply")
    except ValueError as exc:  # an integer of more digits than int() reads (sys.int_info)
        return Invalid("invalid_json", f"{what} JSON holds a number json cannot read: {exc}")
    return obj


def validate_event(obj: object) -> InteractionEvent | Invalid:
    """Validate an already-decoded JSON value against the schema."""
    if not isinstance(obj, dict):
        return Invalid("not_an_object", f"event must be a JSON object, got {_json_type(obj)}")
    version = obj.get("schema_version")
    if version is None:
        return Invalid("missing_field", "missing field 'schema_version'")
    if type(version) is not int or version not in SUPPORTED_SCHEMA_VERSIONS:
        known = ", ".join(map(str, sorted(SUPPORTED_SCHEMA_VERSIONS)))
        return Invalid(
            "unknown_schema_version", f"schema_version {version!r} is not one of: {known}"
        )
    missing = REQUIRED_FIELDS - obj.keys()
    if missing:
        names = ", ".join(f"'{m}'" for m in sorted(missing))
        return Invalid("missing_field", f"missing field{'s' if len(missing) > 1 else ''} {names}")
    unknown = obj.keys() - REQUIRED_FIELDS - OPTIONAL_FIELDS
    if unknown:
        names = ", ".join(f"'{u}'" for u in sorted(unknown))
        return Invalid("unknown_field", f"unknown field{'s' if len(unknown) > 1 else ''} {names}")
    for name in _STR_FIELDS:
        value = obj[name]
        # The usual case inline (a worker validates thousands a second); _check_str decides.
        usual = type(value) is str and 0 < len(value) <= MAX_ID_CHARS and value.isascii()
        if not usual and (problem := _check_str(name, value)) is not None:
            return problem
    cluster = obj.get("cluster_id")
    if cluster is not None and (problem := _check_str("cluster_id", cluster)) is not None:
        return problem
    for name in _NUM_FIELDS:
        value = obj[name]
        # bool is an int subclass in Python, but `true` is no number in the schema.
        if isinstance(value, bool) or not isinstance(value, int | float):
            return Invalid("wrong_type", f"'{name}' must be a number, got {_json_type(value)}")
        if finite_number(value) is None:
            return Invalid("not_finite", f"'{name}' must be finite, got {_number_text(value)}")
    for name in _BOOL_FIELDS:
        if not isinstance(obj[name], bool):
            return Invalid(
                "wrong_type", f"'{name}' must be true or false, got {_json_type(obj[name])}"
            )
    if obj["dwell_seconds"] < 0:
        return Invalid("negative_dwell", f"'dwell_seconds' is {obj['dwell_seconds']}, must be >= 0")
    if obj["item_duration_seconds"] < 0:
        return Invalid(
            "negative_duration",
            f"'item_duration_seconds' is {obj['item_duration_seconds']}, "
            "must be >= 0 (0 = unknown)",
        )
    if obj["timestamp"] <= 0:
        return Invalid(
            "bad_timestamp", f"'timestamp' is {obj['timestamp']}, must be seconds since the epoch"
        )
    return InteractionEvent(
        event_id=obj["event_id"],
        user_id=obj["user_id"],
        item_id=obj["item_id"],
        creator_id=obj["creator_id"],
        timestamp=float(obj["timestamp"]),
        surface=obj["surface"],
        dwell_seconds=float(obj["dwell_seconds"]),
        item_duration_seconds=float(obj["item_duration_seconds"]),
        liked=obj["liked"],
        disliked=obj["disliked"],
        dismissed=obj["dismissed"],
        cluster_id=cluster,
        schema_version=version,
    )


def _check_str(name: str, value: object) -> Invalid | None:
    if not isinstance(value, str):
        return Invalid("wrong_type", f"'{name}' must be a string, got {_json_type(value)}")
    if not value:
        return Invalid("empty_id", f"'{name}' must not be empty")
    if len(value) > MAX_ID_CHARS:
        return Invalid("wrong_type", f"'{name}' is {len(value)} chars, the limit is {MAX_ID_CHARS}")
    # a lone surrogate would fail the worker later, outside validation (recoil.core.checks)
    if (bad := utf8_error(value)) is not None:
        return Invalid(
            "invalid_utf8", f"'{name}' is not UTF-8 text: {bad.reason} at char {bad.start}"
        )
    return None


def _number_text(value: float) -> str:
    """``value`` for a message: an integer too long to print says how long it is."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    return str(value)


def _json_type(value: object) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
