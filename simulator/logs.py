"""Reading logged interaction files as ``InteractionEvent``s (backtests, ``recoil replay``).

``read_event_log(path, mapping=None)`` yields events from

- JSON Lines (``.jsonl``/``.json``): one event per line in the wire schema
  (``recoil.core.events``), validated exactly as the streams validate; or, with a
  :class:`ColumnMapping`, one object per line whose keys the mapping names (review
  dumps such as Amazon's or Yelp's: ``user_id=reviewerID,item_id=asin,rating=overall,
  timestamp=unixReviewTime``);
- CSV / TSV (``.csv``/``.tsv``, or any other name; the delimiter, comma, tab, semicolon
  or ``::``, is sniffed from the first line, whose names are stripped of spaces): columns
  mapped to event fields by a :class:`ColumnMapping`. A file without a header line
  (MovieLens's ``u.data`` and ``ratings.dat``) is read with ``header=no``, its columns
  named by position from 1, as ``cut -f`` counts them.
  Without a mapping the header must be KuaiRand's (``KUAIRAND``, built in);
  ``MOVIELENS`` reads MovieLens's ``ratings.csv`` (``--map movielens``).

A timestamp is a number, seconds since the epoch (milliseconds with ``time_unit=ms``),
or an ISO 8601 date or date and time (``2024-01-31 12:00:00``; without an offset, UTC).

Likes and dislikes come from 0/1 columns, from one label column with a value for
each, or from a star rating: at or above ``rating_like`` a like, at or below
``rating_dislike`` a dislike, and a row in between is skipped (no event).

A bad row stops the read with ``ValueError("FILE:LINE: reason")``: a line that is
not UTF-8, not JSON (nested too deeply, a number json cannot read), not an event,
or a CSV field past the csv module's size limit. A CSV/TSV timestamp past the year
3000 is warned about once (milliseconds read as seconds? ``time_unit=ms``). A UTF-8
byte order mark at the start of the file is skipped; a CSV/TSV header that names a
column twice is refused. Blank lines, and rows whose every field is blank (spreadsheets write them),
are skipped.

A gzip, bzip2 or xz compressed file (known by its first bytes; ``events.jsonl.gz``
is JSON Lines) is read as it decompresses. A zip archive, zstd, Parquet or UTF-16
file is refused with ``ValueError("FILE: what to do")``, as is a damaged archive.

A file without a creator column gets ``creator_id = item_id``: each item is its
own creator, and so does a row whose creator field is empty. That is the finest
grouping that is certainly true; a shared placeholder would claim every item has the
same creator, and a dislike would then (through the creator features) speak against
the whole catalogue.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import itertools
import logging
import lzma
import os
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import IO, Any, Literal

from recoil.core.checks import finite_number
from recoil.core.events import (
    MAX_ID_CHARS,
    InteractionEvent,
    Invalid,
    decode_json,
    parse_event,
    validate_event,
)

TimeUnit = Literal["s", "ms"]
_TRUE = frozenset({"1", "true", "t", "yes", "y"})
_FALSE = frozenset({"0", "false", "f", "no", "n", ""})
_BOM = b"\xef\xbb\xbf"  # UTF-8's byte order mark, which some exporters write first
# A byte that is not UTF-8, as errors="surrogateescape" decodes it (U+DC80..U+DCFF).
_BAD_BYTE = re.compile("[\udc80-\udcff]")
log = logging.getLogger(__name__)

_REQUIRED_COLUMNS = ("user_id", "item_id", "timestamp")
_LINE_DIGITS = 12  # of the default event id "NAME:LINE" (_id_prefix leaves room for 20)
# on a tie the first: a header of one column is a CSV. "::" is MovieLens 1M's and 10M's
# (ratings.dat), read by splitting, without quoting (csv takes one character).
_DELIMITERS = (",", "\t", ";", "::")
# 3000-01-01T00:00:00Z. Any time after 1971 in milliseconds is later than this when read
# as seconds, so a later time is most likely a unit mistake (time_unit=ms): taken as
# seconds it stretches every gap between two events a thousandfold. It is warned about,
# not refused: the order of the events, all a backtest needs, is still right.
_LATEST_TIMESTAMP = 32_503_680_000.0
# A header line longer than this is no header (a binary file, a log without newlines):
# refused before it fills memory (rows have the csv module's field size limit).
_MAX_HEADER_CHARS = 1 << 20
_FORMAT_SUFFIXES = (".gz", ".bz2", ".xz")  # events.jsonl.gz is JSON Lines
# Compressed files are read as they decompress, known by their first bytes.
_DECOMPRESS: dict[bytes, Callable[..., IO[Any]]] = {
    b"\x1f\x8b": gzip.open,
    b"\xfd7zXZ\x00": lzma.open,
}
# bzip2 by more than "BZh", which a text file may start with: the block size digit, then
# the magic of a first block or of the stream's end (an empty stream).
_BZIP2 = re.compile(rb"BZh[1-9](1AY&SY|\x17rE8P\x90)")
# What a damaged or cut short compressed file raises while it is read (bz2: OSError).
_DECOMPRESS_ERRORS = (EOFError, OSError, zlib.error, lzma.LZMAError, gzip.BadGzipFile)
# Files whose first bytes say they are no text log at all, and what to do instead.
_REFUSED = {
    b"PK\x03\x04": "a zip archive (or a spreadsheet): unzip it, or export CSV, and give "
    "the CSV/TSV or JSON Lines file",
    b"\x28\xb5\x2f\xfd": "zstd-compressed: decompress it first (zstd -d), or use gzip",
    b"PAR1": "a Parquet file: export it as CSV/TSV or JSON Lines",
    b"\xff\xfe": "UTF-16 text: save it as UTF-8",
    b"\xfe\xff": "UTF-16 text: save it as UTF-8",
}


def _finite_float(text: str) -> float | None:
    """``text`` as a finite float; None for anything else (NaN and infinities too)."""
    try:
        return finite_number(float(text))
    except ValueError:
        return None


def _same_label(value: str, expected: str) -> bool:
    """Whether a label field holds ``expected``: as text, or as the same number ("1.0"
    for 1: a spreadsheet or pandas writes whole numbers of a column with gaps so)."""
    if value == expected:
        return True
    number, wanted = _finite_float(value), _finite_float(expected)
    return number is not None and number == wanted


@dataclass(frozen=True)
class ColumnMapping:
    """Which column holds each event field; ``None`` means the file has no such column."""

    user_id: str = "user_id"
    item_id: str = "item_id"
    # seconds (or ms, see time_unit) since the epoch, or an ISO 8601 date (iso_seconds)
    timestamp: str = "timestamp"
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
    event_id: str | None = None  # None: "FILE:LINE" (line zero-padded), stable across reads
    time_unit: TimeUnit = "s"  # unit of the timestamp column
    # "no": the file has no header line (MovieLens's u.data and ratings.dat): its columns
    # are named by position, "1" the first (as cut -f counts), and line 1 is data
    header: Literal["yes", "no"] = "yes"
    dwell_unit: TimeUnit = "s"  # unit of the dwell and duration columns
    surface: str = "log"  # surface recorded on every event

    def __post_init__(self) -> None:
        for name in ("time_unit", "dwell_unit"):
            if getattr(self, name) not in ("s", "ms"):
                raise ValueError(f"mapping {name} must be 's' or 'ms', got {getattr(self, name)!r}")
        if self.header not in ("yes", "no"):
            raise ValueError(
                f"mapping header must be 'yes' or 'no' (no header line: columns named 1, 2, "
                f"... by position), got {self.header!r}"
            )
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
        # "1" and "1.0" too: a field matches a label value as text or as a number
        if self.label is not None and _same_label(self.label_like, self.label_dislike):
            both = repr(self.label_like)
            if self.label_like != self.label_dislike:
                both = f"{both} and {self.label_dislike!r}, the same number"
            raise ValueError(
                f"mapping label_like and label_dislike are both {both}: give the two "
                f"different values of column {self.label!r} that mean a like and a dislike"
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
    "surface", "header",
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
    mapping = replace(base, **changes) if changes else base  # type: ignore[arg-type]
    # A value of a column that is not mapped would be ignored, and every row read
    # without likes or dislikes: most likely "label=COLUMN" was left out.
    for column in ("label", "rating"):
        given = [k for k in (f"{column}_like", f"{column}_dislike") if k in changes]
        if given and getattr(mapping, column) is None:
            raise ValueError(
                f"mapping gives {' and '.join(given)} but no {column} column: add {column}=COLUMN"
            )
    return mapping


def log_file_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be a log file ("no such log file", a directory), or None.
    ``os.path``, not ``Path.is_file``: that raises for a name longer than the system takes."""
    if os.path.isfile(path):
        return None
    return "a directory, not a log file" if os.path.isdir(path) else "no such log file"


def read_event_log(
    path: str | Path, mapping: ColumnMapping | None = None
) -> Iterator[InteractionEvent]:
    """Events of a JSONL or CSV/TSV log, in file order (see the module docstring)."""
    path = Path(path)
    problem = log_file_problem(path)
    if problem:
        raise FileNotFoundError(f"{problem}: {path}")
    opener = _opener(path)
    damaged = _DECOMPRESS_ERRORS if opener is not open else ()  # a plain file's OSError is its own
    try:
        if _format_suffix(path) in (".jsonl", ".json", ".ndjson"):
            if mapping is None:
                yield from _read_jsonl(path, opener)
            else:
                yield from _read_mapped_jsonl(path, mapping, opener)
        else:
            yield from _read_table(path, mapping, opener)
    except damaged as exc:  # no line to name: the archive itself is bad
        raise ValueError(f"{path}: the compressed file is damaged or cut short: {exc}") from None


def _opener(path: Path) -> Callable[..., IO[Any]]:
    """How to open ``path``: decompressing it when its first bytes say it is compressed.
    A ValueError says what to do with a file that is no text log (``_REFUSED``)."""
    with path.open("rb") as handle:
        head = handle.read(16)
    for magic, what in _REFUSED.items():
        if head.startswith(magic):
            raise ValueError(f"{path}: the file is {what}")
    for magic, opener in _DECOMPRESS.items():
        if head.startswith(magic):
            return opener
    return bz2.open if _BZIP2.match(head) else open


def _format_suffix(path: Path) -> str:
    """The suffix that says the format, after a compression suffix: ``.jsonl`` of
    ``events.jsonl.gz``."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _FORMAT_SUFFIXES:
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def _id_prefix(path: Path) -> str:
    """The file's name as the default event id's prefix ("NAME:LINE"): valid UTF-8 (a
    name of other bytes would make every id a lone surrogate, which validation refuses)
    and short enough that the id keeps within MAX_ID_CHARS whatever the line number."""
    name = os.fsencode(path.name).decode("utf-8", errors="replace")
    keep = MAX_ID_CHARS - 21  # ":" and up to 20 digits of line number
    return name if len(name) <= keep else name[: keep - 3] + "..."


def _read_jsonl(path: Path, opener: Callable[..., IO[Any]]) -> Iterator[InteractionEvent]:
    """Each line decoded and validated as the stream workers do (``parse_event``): bytes
    that are not UTF-8, JSON nested too deeply, a number json cannot read and an
    oversized line are errors of their line, like a missing field."""
    warned = False  # about an implausible time, once a file
    with opener(path, "rb") as lines:
        for lineno, line in _json_lines(lines, path):
            event = _valid(parse_event(line), path, lineno)
            warned = warned or _warn_if_late(event, path, lineno, None)
            yield event


def _json_lines(
    lines: Iterable[bytes], path: Path, max_bytes: int | None = None
) -> Iterator[tuple[int, bytes]]:
    """The numbered lines of a JSON Lines file, stripped, without a byte order mark at
    the start and without blank lines (which still count); with ``max_bytes`` a longer
    line is an error of its line."""
    for lineno, line in enumerate(lines, start=1):
        if lineno == 1 and line.startswith(_BOM):
            line = line[len(_BOM) :]
        if max_bytes is not None and len(line) > max_bytes:
            raise ValueError(
                f"{path}:{lineno}: the line is over {max_bytes} bytes: one JSON object a "
                "line is expected"
            )
        line = line.strip()
        if line:
            yield lineno, line


def iso_seconds(text: str) -> float | None:
    """Seconds since the epoch of an ISO 8601 date or date and time (``2024-01-31``,
    ``2024-01-31 12:00:00``, ``...T12:00:00+01:00``, ``...Z``), or None if ``text`` is not one.

    A time without an offset is read as UTC, so the same file reads the same on every
    host (logs exported without an offset are usually UTC; the local zone of whoever
    runs the backtest says nothing about the file). A field that is a number is read as
    one before this is asked: ``20240131`` is seconds, not a date."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def _warn_if_late(event: InteractionEvent, path: Path, lineno: int, unit: TimeUnit | None) -> bool:
    """Warn (and say so) if ``event``'s time is after the year 3000, as read in ``unit``
    (None: a JSON Lines event, whose schema has seconds); see _LATEST_TIMESTAMP."""
    if event.timestamp <= _LATEST_TIMESTAMP:
        return False
    hint = {
        "ms": "is the unit right?",
        "s": "milliseconds? add time_unit=ms to the mapping",
        None: "milliseconds? the event schema's timestamp is in seconds",
    }[unit]
    log.warning(
        "%s:%d: timestamp %s is after the year 3000 read as %s; %s",
        path, lineno, event.timestamp, "milliseconds" if unit == "ms" else "seconds", hint,
    )  # fmt: skip
    return True


def _check_utf8(fields: list[str], path: Path, lineno: int) -> None:
    """Raise if a field holds a byte that is not UTF-8 (decoded with surrogateescape)."""
    for text in fields:
        if not text.isascii() and (bad := _BAD_BYTE.search(text)):
            byte = ord(bad.group()) - 0xDC00
            shown = text if len(text) <= 40 else text[:37] + "..."
            raise ValueError(
                f"{path}:{lineno}: not UTF-8: byte 0x{byte:02x} in {shown!r} "
                "(save the file as UTF-8)"
            )


def _read_table(
    path: Path, mapping: ColumnMapping | None, opener: Callable[..., IO[Any]]
) -> Iterator[InteractionEvent]:
    # utf-8-sig: a byte order mark is not part of the first column's name. Bytes that
    # are not UTF-8 are kept as escapes and reported with their line (_check_utf8).
    text = {"newline": "", "encoding": "utf-8-sig", "errors": "surrogateescape"}
    with opener(path, "rt", **text) as handle:
        first = handle.readline(_MAX_HEADER_CHARS + 1)
        if len(first) > _MAX_HEADER_CHARS:
            raise ValueError(
                f"{path}:1: the header line is over {_MAX_HEADER_CHARS} characters: is this a "
                "CSV/TSV file with a header line?"
            )
        if not first.strip():
            raise ValueError(
                f"{path}: the file is empty: a CSV/TSV log starts with a header line naming "
                "its columns (or, mapped with header=no, with its first row)"
            )
        delimiter = max(_DELIMITERS, key=first.count)
        fields = next(_rows([first], delimiter, path, 1), [])
        _check_utf8(fields, path, 1)
        rows = _rows(handle, delimiter, path, 2)
        if mapping is not None and mapping.header == "no":
            columns = [str(i) for i in range(1, len(fields) + 1)]
            _check_columns(mapping, columns, path, f"its first line has {len(fields)} fields")
            rows, first_lineno = itertools.chain([fields], rows), 1  # line 1 is data
        else:
            columns, mapping = _header_columns(fields, mapping, path)
            first_lineno = 2
        position = {name: i for i, name in enumerate(columns)}
        prefix = _id_prefix(path)
        warned = False  # about an implausible time, once a file
        for lineno, row in enumerate(rows, first_lineno):
            if not any(field.strip() for field in row):  # a blank line, or ",,,"
                continue
            _check_utf8(row, path, lineno)
            if len(row) != len(columns):
                what = "the header has" if mapping.header == "yes" else "the first line has"
                raise ValueError(f"{path}:{lineno}: {len(row)} fields, {what} {len(columns)}")
            event = _mapped_event(row, position, mapping, path, prefix, lineno)
            if event is not None:
                warned = warned or _warn_if_late(event, path, lineno, mapping.time_unit)
                yield event


def _header_columns(
    names: list[str], mapping: ColumnMapping | None, path: Path
) -> tuple[list[str], ColumnMapping]:
    """The header's column names, checked, and the mapping (KuaiRand's when none is given
    and the header is KuaiRand's)."""
    # "user_id, item_id": the spaces are no part of a name (a mapping's are stripped)
    columns = [c.strip() for c in names]
    # Unnamed columns (a trailing delimiter, an index column) cannot be mapped, so
    # only named ones must differ.
    # a header of numbers is most likely a first row of data: every header error says so
    data_line = _data_line_hint(columns)
    repeated = sorted({c for c in columns if c and columns.count(c) > 1})
    if repeated:
        raise ValueError(
            f"{path}:1: the header names columns more than once: {repeated}; "
            f"give every column its own name{data_line}"
        )
    if mapping is None:
        if not set(KUAIRAND.columns()) <= set(columns):
            raise ValueError(
                f"{path}: give a column mapping (--map field=column,...); the header "
                f"{columns} is not KuaiRand's{data_line}"
            )
        mapping = KUAIRAND
    shown = columns if len(columns) <= 20 else [*columns[:20], "..."]
    hint = (
        " (one column: is the delimiter other than comma, tab, semicolon or '::', or is "
        "there no header line?)"
        if len(columns) == 1
        else data_line
    )
    _check_columns(mapping, columns, path, f"the header has {shown}{hint}")
    return columns, mapping


def _check_columns(mapping: ColumnMapping, columns: list[str], path: Path, has: str) -> None:
    missing = [c for c in mapping.columns() if c not in columns]
    if missing:
        raise ValueError(f"{path}: the mapping names columns the file lacks: {missing}; {has}")


def _mapped_event(
    row: list[str],
    position: dict[str, int],
    mapping: ColumnMapping,
    path: Path,
    prefix: str,
    lineno: int,
) -> InteractionEvent | None:
    """The event of one mapped row (None for a middling rating); a bad one raises
    ``ValueError("FILE:LINE: reason")``."""
    try:
        # zero-padded, so that the tie-break of events at one time
        # (recoil.core.windows: by event id) is the file's order, as the replay's
        # stable sort sends them: "log.csv:10" would sort before "log.csv:9"
        obj = _row_event(row, position, mapping, f"{prefix}:{lineno:0{_LINE_DIGITS}d}")
    except ValueError as exc:
        raise ValueError(f"{path}:{lineno}: {exc}") from None
    return None if obj is None else _valid(validate_event(obj), path, lineno)


def _read_mapped_jsonl(
    path: Path, mapping: ColumnMapping, opener: Callable[..., IO[Any]]
) -> Iterator[InteractionEvent]:
    """Objects, one a line, whose keys the mapping names, read as a table's rows: a
    number or true/false is read as its JSON text, null as an empty field; a missing
    key, a nested value or a line that is no object is an error of its line."""
    if mapping.header == "no":
        raise ValueError(
            f"{path}: header=no is for CSV/TSV files without a header line; a JSON Lines "
            "file's keys name its columns: drop header=no"
        )
    columns = mapping.columns()
    position = {name: i for i, name in enumerate(columns)}
    prefix = _id_prefix(path)
    warned = False
    with opener(path, "rb") as lines:
        for lineno, line in _json_lines(lines, path, max_bytes=_MAX_HEADER_CHARS):
            obj = decode_json(line, "line")
            if isinstance(obj, Invalid):
                raise ValueError(f"{path}:{lineno}: {obj.reason}")
            if not isinstance(obj, dict):
                got = type(obj).__name__
                raise ValueError(f"{path}:{lineno}: expected a JSON object, got {got}")
            row = [_json_field(obj, name, path, lineno) for name in columns]
            event = _mapped_event(row, position, mapping, path, prefix, lineno)
            if event is not None:
                warned = warned or _warn_if_late(event, path, lineno, mapping.time_unit)
                yield event


def _json_field(obj: dict[str, Any], key: str, path: Path, lineno: int) -> str:
    """A mapped key's value as a table field would hold it."""
    if key not in obj:
        shown = sorted(obj)[:20]
        raise ValueError(f"{path}:{lineno}: no key {key!r} (the mapping names it); keys: {shown}")
    value = obj[key]
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return repr(value)
    raise ValueError(
        f"{path}:{lineno}: key {key!r} holds a JSON {type(value).__name__}; a mapped key "
        "needs a string, a number, true/false or null"
    )


def _data_line_hint(columns: list[str]) -> str:
    """What to say when every name of the header is a number: most likely the file has no
    header line (MovieLens's ``u.data``, ``ratings.dat`` and the like) and its first row
    was read as one. A header of numbers is legal (pandas writes one for unnamed
    columns), so this only adds to an error the header caused anyway."""
    if not all(_finite_float(c) is not None for c in columns):
        return ""
    return (
        "; every name in it is a number: is the first line data? Map a file without a "
        "header line with header=no and its columns by position (for MovieLens's u.data: "
        "--map header=no,user_id=1,item_id=2,rating=3,timestamp=4)"
    )


def _rows(
    lines: Iterable[str], delimiter: str, path: Path, first_lineno: int
) -> Iterator[list[str]]:
    """Each line's fields: the csv module's rows, or for "::" the line split on it (no
    quoting). A row the csv module cannot read is an error of its line."""
    if delimiter == "::":
        for line in lines:
            yield line.rstrip("\r\n").split("::")
        return
    reader = csv.reader(lines, delimiter=delimiter)
    lineno = first_lineno - 1
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

    def timestamp() -> float:
        """The time in seconds; unlike dwell, a row cannot do without one."""
        raw = get(m.timestamp) or ""
        if raw == "":
            raise ValueError(f"column {m.timestamp!r} is empty: every row needs its time")
        try:
            return number(m.timestamp, m.time_unit)  # NaN, inf: validate_event says "finite"
        except ValueError:
            pass
        seconds = iso_seconds(raw)
        if seconds is None:
            raise ValueError(
                f"column {m.timestamp!r} must be a number or an ISO 8601 date, got {raw!r}: "
                "seconds since the epoch (milliseconds with time_unit=ms), or a date and "
                "time such as 2024-01-31T12:00:00Z (without an offset read as UTC)"
            )
        return seconds

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
        value = get(m.label) or ""
        liked = _same_label(value, m.label_like)
        disliked = _same_label(value, m.label_dislike)
        if not (liked or disliked):
            raise ValueError(
                f"column {m.label!r} is {value!r}; expected {m.label_like!r} (like) "
                f"or {m.label_dislike!r} (dislike){_label_hint(m, value)}"
            )
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
        "creator_id": get(m.creator_id) or item,  # no column, or no value: its own creator
        "cluster_id": get(m.cluster_id) or None,
        "timestamp": timestamp(),
        "surface": m.surface,
        "dwell_seconds": number(m.dwell_seconds, m.dwell_unit),
        "item_duration_seconds": number(m.item_duration_seconds, m.dwell_unit),
        "liked": liked,
        "disliked": disliked,
        "dismissed": flag(m.dismissed),
        "schema_version": 1,
    }


def _label_hint(m: ColumnMapping, value: str) -> str:
    """For a number between numeric label values: how to skip such rows (a rating
    mapping skips what lies between its thresholds), e.g. the 0 of a -1/0/1 label."""
    like, dislike = _finite_float(m.label_like), _finite_float(m.label_dislike)
    number = _finite_float(value)
    if like is None or dislike is None or number is None or not dislike < number < like:
        return ""
    return (
        f"; to skip rows of values between the two, map it as a rating: rating={m.label},"
        f"rating_like={m.label_like},rating_dislike={m.label_dislike}"
    )


def _valid(result: InteractionEvent | Invalid, path: Path, lineno: int) -> InteractionEvent:
    if isinstance(result, Invalid):
        raise ValueError(f"{path}:{lineno}: {result.reason}")
    return result
