"""Reading logged interaction files as ``InteractionEvent``s (backtests, ``recoil replay``).

``read_event_log(path, mapping=None)`` yields events from

- JSON Lines (``.jsonl``/``.json``): one event per line in the wire schema
  (``recoil.core.events``), validated exactly as the streams validate;
- CSV / TSV (``.csv``/``.tsv``, or any other name; the delimiter is sniffed
  from the header): columns mapped to event fields by a :class:`ColumnMapping`.
  Without a mapping the header must be KuaiRand's (``KUAIRAND``, built in).

A bad row stops the read with ``ValueError("FILE:LINE: reason")``.

A file without a creator column gets ``creator_id = item_id``: each item is its
own creator. That is the finest grouping that is certainly true; a shared
placeholder would claim every item has the same creator, and a dislike would
then (through the creator features) speak against the whole catalogue.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Literal

from recoil.core.events import InteractionEvent, Invalid, validate_event

TimeUnit = Literal["s", "ms"]
_TRUE = frozenset({"1", "true", "t", "yes", "y"})
_FALSE = frozenset({"0", "false", "f", "no", "n", ""})


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
    event_id: str | None = None  # None: "FILE:LINE", stable across reads
    time_unit: TimeUnit = "s"  # unit of the timestamp column
    dwell_unit: TimeUnit = "s"  # unit of the dwell and duration columns
    surface: str = "log"  # surface recorded on every event

    def __post_init__(self) -> None:
        for name in ("time_unit", "dwell_unit"):
            if getattr(self, name) not in ("s", "ms"):
                raise ValueError(f"mapping {name} must be 's' or 'ms', got {getattr(self, name)!r}")
        if self.label is not None and (self.liked or self.disliked):
            raise ValueError("mapping: give either label or liked/disliked columns, not both")

    def columns(self) -> list[str]:
        """The columns the file must have."""
        names = [
            self.user_id, self.item_id, self.timestamp, self.creator_id, self.cluster_id,
            self.dwell_seconds, self.item_duration_seconds, self.liked, self.disliked,
            self.dismissed, self.label, self.event_id,
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

_MAPPING_FIELDS = {f.name for f in fields(ColumnMapping)}


def parse_mapping(text: str) -> ColumnMapping:
    """``"kuairand"`` or ``"field=column,...,time_unit=ms"`` (fields of ColumnMapping)."""
    if text.strip().lower() == "kuairand":
        return KUAIRAND
    changes: dict[str, str | None] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep:
            raise ValueError(f"mapping entry {part!r} is not FIELD=COLUMN")
        if key not in _MAPPING_FIELDS:
            raise ValueError(f"unknown mapping field {key!r}; fields: {sorted(_MAPPING_FIELDS)}")
        changes[key] = value.strip() or None
    return replace(ColumnMapping(), **changes)  # type: ignore[arg-type]


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
    with path.open(encoding="utf-8") as lines:
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not JSON: {exc.msg}") from None
            yield _valid(validate_event(obj), path, lineno)


def _read_table(path: Path, mapping: ColumnMapping | None) -> Iterator[InteractionEvent]:
    with path.open(newline="", encoding="utf-8") as handle:
        header = handle.readline()
        delimiter = "\t" if header.count("\t") > header.count(",") else ","
        columns = next(csv.reader([header], delimiter=delimiter))
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
        for lineno, row in enumerate(csv.reader(handle, delimiter=delimiter), start=2):
            if not row:
                continue
            if len(row) != len(columns):
                raise ValueError(
                    f"{path}:{lineno}: {len(row)} fields, the header has {len(columns)}"
                )
            try:
                obj = _row_event(row, position, mapping, f"{path.name}:{lineno}")
            except ValueError as exc:
                raise ValueError(f"{path}:{lineno}: {exc}") from None
            yield _valid(validate_event(obj), path, lineno)


def _row_event(
    row: list[str], position: dict[str, int], m: ColumnMapping, default_id: str
) -> dict[str, object]:
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
