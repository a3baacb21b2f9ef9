"""Reading logged interaction files as ``InteractionEvent``s (backtests, ``recoil replay``).

``read_event_log(path, mapping=None)`` yields events from

- JSON Lines (``.jsonl``/``.json``): one event per line in the wire schema
  (``recoil.core.events``), validated exactly as the streams validate;
- CSV / TSV (``.csv``/``.tsv``, or any other name; the delimiter is sniffed
  from the header): columns mapped to event fields by a :class:`ColumnMapping`.
  Without a mapping the header must be KuaiRand's (``KUAIRAND``, built in);
  ``MOVIELENS`` reads MovieLens's ``ratings.csv`` (``--map movielens``).

Likes and dislikes come from 0/1 columns, from one label column with a value for
each, or from a star rating: at or above ``rating_like`` a like, at or below
``rating_dislike`` a dislike, and a row in between is skipped (no event).

A bad row stops the read with ``ValueError("FILE:LINE: reason")``: a line that is
not UTF-8, not JSON (nested too deeply, a number json cannot read), not an event,
or a CSV field past the csv module's size limit. A UTF-8 byte order mark at the
start of the file is skipped; a CSV/TSV header that names a column twice is refused.

A file without a creator column gets ``creator_id = item_id``: each item is its
own creator. That is the finest grouping that is certainly true; a shared
placeholder would claim every item has the same creator, and a dislike would
then (through the creator features) speak against the whole catalogue.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Literal

from recoil.core.checks import finite_number
from recoil.core.events import InteractionEvent, Invalid, parse_event, validate_event

TimeUnit = Literal["s", "ms"]
_TRUE = frozenset({"1", "true", "t", "yes", "y"})
_FALSE = frozenset({"0", "false", "f", "no", "n", ""})
_BOM = b"\xef\xbb\xbf"  # UTF-8's byte order mark, which some exporters write first
# A byte that is not UTF-8, as errors="surrogateescape" decodes it (U+DC80..U+DCFF).
_BAD_BYTE = re.compile("[\udc80-\udcff]")
_REQUIRED_COLUMNS = ("user_id", "item_id", "timestamp")


def _finite_float(text: str) -> float | None:
    """``text`` as a finite float; None for anything else (NaN and infinities too)."""
    try:
        return finite_number(float(text))
    except ValueError:
        return None


@dataclass(frozen=True)
class ColumnMapping:
    """Which column holds each event field; ``None`` means the file has no such column."""

    user_id: str = "user_id"
    item_id: str = "item_id"
    timestamp: str = "timestamp"  # numeric, seconds (or ms, see time_unit) since the epoch
    creator_id: str | None = None  # None: creator_id = item_id
    cluster_id: str | None = None  # None: no content cluster
    dwell_seconds: str | None = None  # None: dwell 0 (then only likes/dislikes label)
    item_duration_seconds: str | None = None  # None or 0: duration unknown
    liked: str | None = None  # a 0/1 (true/false) column
    disliked: str | None = None  # a 0/1 (true/false) column
    dismissed: str | None = None  # a 0/1 (true/false) column
    label: str | None = None  # one column deciding like/dislike, see label_like/label_dislike
    label_like: str = "1"  # value of ``label`` that means a like
    label_dislike: str = "0"  # value of ``label`` that means a dislike
    # A numeric rating column (stars): at or above rating_like a like, at or below
    # rating_dislike a dislike, and a row in between is no event at all (a middling
    # rating says neither, as in the usual 1-2 / 4-5 split of star ratings).
    rating: str | None = None
    rating_like: str = "4"
    rating_dislike: str = "2"
    event_id: str | None = None  # None: "FILE:LINE", stable across reads
    time_unit: TimeUnit = "s"  # unit of the timestamp column
    dwell_unit: TimeUnit = "s"  # unit of the dwell and duration columns
    surface: str = "log"  # surface recorded on every event

    def __post_init__(self) -> None:
        for name in ("time_unit", "dwell_unit"):
            if getattr(self, name) not in ("s", "ms"):
                raise ValueError(f"mapping {name} must be 's' or 'ms', got {getattr(self, name)!r}")
        given = [n for n in ("label", "rating") if getattr(self, n) is not None]
        if self.liked or self.disliked:
            given.append("liked/disliked")
        if len(given) > 1:
            raise ValueError(
                f"mapping: give one of label, rating or liked/disliked columns, not {given}"
            )
        if self.rating is not None:
            like, dislike = self.rating_thresholds
            if not dislike < like:
                raise ValueError(
                    f"mapping rating_dislike ({self.rating_dislike}) must be below rating_like "
                    f"({self.rating_like}): ratings at or below it are dislikes, at or above "
                    "rating_like likes"
                )
        for name in _REQUIRED_COLUMNS:
            if not getattr(self, name):
                raise ValueError(f"mapping {name} must name a column, got {getattr(self, name)!r}")
        if self.label is not None and self.label_like == self.label_dislike:
            raise ValueError(
                f"mapping label_like and label_dislike are both {self.label_like!r}: give the "
                f"two different values of column {self.label!r} that mean a like and a dislike"
            )

    @cached_property
    def rating_thresholds(self) -> tuple[float, float]:
        """``(rating_like, rating_dislike)`` as numbers, parsed once (every row of a rating
        file reads them); a ValueError names a bad one."""
        values = []
        for name in ("rating_like", "rating_dislike"):
            text = getattr(self, name)
            value = _finite_float(text)
            if value is None:
                raise ValueError(f"mapping {name} must be a finite number, got {text!r}")
            values.append(value)
        return values[0], values[1]

    def columns(self) -> list[str]:
        """The columns the file must have."""
        names = [
            self.user_id, self.item_id, self.timestamp, self.creator_id, self.cluster_id,
            self.dwell_seconds, self.item_duration_seconds, self.liked, self.disliked,
            self.dismissed, self.label, self.rating, self.event_id,
        ]  # fmt: skip
        return [n for n in names if n is not None]


# KuaiRand-27K's standard log (../shared/data/kuairand_k15_likes_hates.tsv): every row
# is a like (label 1) or a hate (label 0); times in milliseconds; no creator column.
KUAIRAND = ColumnMapping(
    user_id="user_id",
    item_id="video_id",
    timestamp="time_ms",
    dwell_seconds="play_time_ms",
    item_duration_seconds="duration_ms",
    label="label",
    time_unit="ms",
    dwell_unit="ms",
    surface="kuairand",
)

# MovieLens's ratings.csv (ml-latest-small, ml-25m, ml-32m: userId,movieId,rating,timestamp;
# half stars from 0.5 to 5): 4 and above a like, 2 and below a dislike, the rest dropped.
# No creator column, so each film is its own creator.
MOVIELENS = ColumnMapping(
    user_id="userId",
    item_id="movieId",
    timestamp="timestamp",
    rating="rating",
    surface="movielens",
)
_PRESETS = {"kuairand": KUAIRAND, "movielens": MOVIELENS}

_MAPPING_FIELDS = {f.name for f in fields(ColumnMapping)}
# the fields that hold a value, not a column name
_VALUE_FIELDS = {
    "label_like", "label_dislike", "rating_like", "rating_dislike", "time_unit", "dwell_unit",
    "surface",
}  # fmt: skip


def parse_mapping(text: str) -> ColumnMapping:
    """``"field=column,...,time_unit=ms"`` (fields of ColumnMapping), optionally after a
    preset's name (``kuairand``, ``movielens``) whose fields the entries then change:
    ``movielens,creator_id=genres``."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    base = ColumnMapping()
    if parts and parts[0].lower() in _PRESETS:  # a preset name holds no "="
        base = _PRESETS[parts.pop(0).lower()]
    changes: dict[str, str] = {}
    for part in parts:
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep:
            if key.lower() in _PRESETS:
                raise ValueError(
                    f"mapping preset {part!r} must come first: {part},FIELD=COLUMN,..."
                )
            raise ValueError(
                f"mapping entry {part!r} is not FIELD=COLUMN (or a preset first: "
                f"{', '.join(sorted(_PRESETS))})"
            )
        if key not in _MAPPING_FIELDS:
            raise ValueError(f"unknown mapping field {key!r}; fields: {sorted(_MAPPING_FIELDS)}")
        if not value:
            what = "VALUE" if key in _VALUE_FIELDS else "COLUMN"
            raise ValueError(f"mapping entry {part!r} is empty: give {key}={what}")
        if key in changes:
            raise ValueError(f"mapping field {key!r} is given twice")
        changes[key] = value
    return replace(base, **changes) if changes else base  # type: ignore[arg-type]


def read_event_log(
    path: str | Path, mapping: ColumnMapping | None = None
) -> Iterator[InteractionEvent]:
    """Events of a JSONL or CSV/TSV log, in file order (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such log file: {path}")
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        if mapping is not None:
            raise ValueError(f"{path}: a JSON Lines log is in the event schema; drop the mapping")
        yield from _read_jsonl(path)
    else:
        yield from _read_table(path, mapping)


def _read_jsonl(path: Path) -> Iterator[InteractionEvent]:
    """Each line decoded and validated as the stream workers do (``parse_event``): bytes
    that are not UTF-8, JSON nested too deeply, a number json cannot read and an
    oversized line are errors of their line, like a missing field."""
    with path.open("rb") as lines:
        for lineno, line in enumerate(lines, start=1):
            if lineno == 1 and line.startswith(_BOM):
                line = line[len(_BOM) :]
            line = line.strip()
            if not line:
                continue
            yield _valid(parse_event(line), path, lineno)


def _check_utf8(fields: list[str], path: Path, lineno: int) -> None:
    """Raise if a field holds a byte that is not UTF-8 (decoded with surrogateescape)."""
    for text in fields:
        if not text.isascii() and (bad := _BAD_BYTE.search(text)):
            byte = ord(bad.group()) - 0xDC00
            shown = text if len(text) <= 40 else text[:37] + "..."
            raise ValueError(f"{path}:{lineno}: not UTF-8: byte 0x{byte:02x} in {shown!r}")


def _read_table(path: Path, mapping: ColumnMapping | None) -> Iterator[InteractionEvent]:
    # utf-8-sig: a byte order mark is not part of the first column's name. Bytes that
    # are not UTF-8 are kept as escapes and reported with their line (_check_utf8).
    with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as handle:
        header = handle.readline()
        delimiter = "\t" if header.count("\t") > header.count(",") else ","
        try:
            columns = next(csv.reader([header], delimiter=delimiter), [])
        except csv.Error as exc:
            raise ValueError(f"{path}:1: the header is not CSV: {exc}") from None
        _check_utf8(columns, path, 1)
        repeated = sorted({c for c in columns if columns.count(c) > 1})
        if repeated:
            raise ValueError(
                f"{path}:1: the header names columns more than once: {repeated}; "
                "give every column its own name"
            )
        if mapping is None:
            if not set(KUAIRAND.columns()) <= set(columns):
                raise ValueError(
                    f"{path}: give a column mapping (--map field=column,...); the header "
                    f"{columns} is not KuaiRand's"
                )
            mapping = KUAIRAND
        missing = [c for c in mapping.columns() if c not in columns]
        if missing:
            raise ValueError(f"{path}: the mapping names columns the file lacks: {missing}")
        position = {name: i for i, name in enumerate(columns)}
        for lineno, row in enumerate(_rows(handle, delimiter, path), start=2):
            if not row:
                continue
            _check_utf8(row, path, lineno)
            if len(row) != len(columns):
                raise ValueError(
                    f"{path}:{lineno}: {len(row)} fields, the header has {len(columns)}"
                )
            try:
                obj = _row_event(row, position, mapping, f"{path.name}:{lineno}")
            except ValueError as exc:
                raise ValueError(f"{path}:{lineno}: {exc}") from None
            if obj is not None:
                yield _valid(validate_event(obj), path, lineno)


def _rows(handle: Iterator[str], delimiter: str, path: Path) -> Iterator[list[str]]:
    """The csv module's rows; a row it cannot read is an error of its line (numbered as
    the rows are: the header is line 1)."""
    reader = csv.reader(handle, delimiter=delimiter)
    lineno = 1
    while True:
        lineno += 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ValueError(
                f"{path}:{lineno}: not CSV: {exc} (is a quote left open, or the delimiter "
                f"not {delimiter!r}?)"
            ) from None
        yield row


def _row_event(
    row: list[str], position: dict[str, int], m: ColumnMapping, default_id: str
) -> dict[str, object] | None:
    """The row as an event object for ``validate_event``; None for a middling rating."""

    def get(column: str | None) -> str | None:
        return None if column is None else row[position[column]].strip()

    def number(column: str | None, unit: TimeUnit) -> float:
        raw = get(column)
        if raw is None or raw == "":
            return 0.0
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"column {column!r} must be a number, got {raw!r}") from None
        return value / 1000.0 if unit == "ms" else value

    def flag(column: str | None) -> bool:
        raw = get(column)
        if raw is None:
            return False
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise ValueError(f"column {column!r} must be 0/1 or true/false, got {raw!r}")

    liked, disliked = flag(m.liked), flag(m.disliked)
    if m.label is not None:
        value = get(m.label)
        if value not in (m.label_like, m.label_dislike):
            raise ValueError(
                f"column {m.label!r} is {value!r}; expected {m.label_like!r} (like) "
                f"or {m.label_dislike!r} (dislike)"
            )
        liked, disliked = value == m.label_like, value == m.label_dislike
    if m.rating is not None:
        raw = get(m.rating) or ""
        stars = _finite_float(raw)
        if stars is None:
            raise ValueError(f"column {m.rating!r} must be a finite number, got {raw!r}")
        like_at, dislike_at = m.rating_thresholds
        liked, disliked = stars >= like_at, stars <= dislike_at
        if not (liked or disliked):
            return None
    item = get(m.item_id)
    return {
        "event_id": get(m.event_id) or default_id,
        "user_id": get(m.user_id),
        "item_id": item,
        "creator_id": get(m.creator_id) if m.creator_id else item,
        "cluster_id": get(m.cluster_id) or None,
        "timestamp": number(m.timestamp, m.time_unit),
        "surface": m.surface,
        "dwell_seconds": number(m.dwell_seconds, m.dwell_unit),
        "item_duration_seconds": number(m.item_duration_seconds, m.dwell_unit),
        "liked": liked,
        "disliked": disliked,
        "dismissed": flag(m.dismissed),
        "schema_version": 1,
    }


def _valid(result: InteractionEvent | Invalid, path: Path, lineno: int) -> InteractionEvent:
    if isinstance(result, Invalid):
        raise ValueError(f"{path}:{lineno}: {result.reason}")
    return result
