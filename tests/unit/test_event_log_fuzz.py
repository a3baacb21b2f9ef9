"""The event-log reader under generated files: events, or ``ValueError("FILE:LINE: ...")``.

test_event_log_errors.py pins what each known bad input reads as; here Hypothesis
writes MovieLens-shaped rows (comma, tab, semicolon or "::" between fields, with or
without a header line) whose fields are usually right and sometimes any text or bytes,
JSON Lines files of near-events and noise, and JSON Lines review dumps read through a
mapping. Whatever the file holds,
``recoil backtest`` and ``recoil replay`` must get either valid events or one error that
names the file (and the line, where one line is at fault), never a traceback of another
kind.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from dataclasses import replace
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.logs import MOVIELENS, ColumnMapping, read_event_log

_ANY_TEXT = st.text(st.characters(codec="utf-8"), max_size=12)  # no lone surrogates
_VALID = {
    "userId": st.integers(1, 50).map(str),
    "movieId": st.integers(1, 500).map(str),
    "rating": st.sampled_from(["0.5", "1", "2", "2.5", "3", "3.5", "4", "4.5", "5"]),
    "timestamp": st.integers(1, 2**31).map(str),
}
_ODD_FIELD = st.one_of(
    _ANY_TEXT, st.sampled_from(["", "nan", "inf", "-1", "1e999", "0", " 4", "4,5", "9" * 400])
)
_HEADER = list(_VALID)
# the same columns by position, for a file without its header line
_BARE = replace(MOVIELENS, header="no", user_id="1", item_id="2", rating="3", timestamp="4")


@st.composite
def _table(draw: st.DrawFn) -> tuple[bytes, ColumnMapping]:
    """A ratings file of usually valid rows; in some rows one field any text, or a field
    too many or too few; now and then raw bytes anywhere (not UTF-8, NUL, a lone quote).
    With its header line or without, and the mapping that reads it."""
    delimiter = draw(st.sampled_from([",", "\t", ";", "::"]))
    header = draw(st.booleans())
    lines = [delimiter.join(_HEADER)] if header else []
    for _ in range(draw(st.integers(0, 8))):
        fields = [draw(_VALID[c]) for c in _HEADER]
        wrong = draw(st.integers(0, 7))
        if wrong < len(fields):
            fields[wrong] = draw(_ODD_FIELD.filter(lambda t: "\n" not in t and "\r" not in t))
        elif wrong == len(fields):
            fields = fields[:-1] if draw(st.booleans()) else [*fields, "x"]
        lines.append(delimiter.join(fields))
    body = "\n".join(lines).encode()
    if draw(st.integers(0, 9)) == 0:
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.binary(min_size=1, max_size=4)) + body[at:]
    return body, MOVIELENS if header else _BARE


_EVENT = {
    "event_id": st.text(min_size=1, max_size=4), "user_id": st.text(min_size=1, max_size=4),
    "item_id": st.text(min_size=1, max_size=4), "creator_id": st.text(min_size=1, max_size=4),
    "timestamp": st.floats(0, 2e9), "surface": st.just("home"),
    "dwell_seconds": st.floats(0, 100), "item_duration_seconds": st.floats(0, 100),
    "liked": st.booleans(), "disliked": st.booleans(), "dismissed": st.booleans(),
    "schema_version": st.just(1),
}  # fmt: skip
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _ANY_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_ANY_TEXT, inner, max_size=3),
    max_leaves=6,
)


@st.composite
def _jsonl(draw: st.DrawFn) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        event = draw(st.fixed_dictionaries(_EVENT))
        kind = draw(st.integers(0, 9))  # 4-9: the event as it is
        if kind == 0 and event:  # one field any JSON value
            event[draw(st.sampled_from(sorted(event)))] = draw(_JSON)
        elif kind == 1:  # one field gone
            del event[draw(st.sampled_from(sorted(event)))]
        line = json.dumps(event).encode()
        if kind == 2:
            line = draw(st.binary(max_size=20))
        elif kind == 3:
            line = json.dumps(draw(_JSON)).encode()
        lines.append(line.replace(b"\n", b" "))
    return b"\n".join(lines)


@st.composite
def _review_dump(draw: st.DrawFn) -> bytes:
    """JSON Lines of objects with MovieLens's keys: values usually right (as JSON numbers
    or strings), sometimes any JSON value, a key gone or an extra one; noise lines."""
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        row: dict[str, object] = {key: draw(value) for key, value in _VALID.items()}
        for key in ("userId", "movieId", "timestamp"):
            if draw(st.booleans()):
                row[key] = int(str(row[key]))
        kind = draw(st.integers(0, 9))  # 4-9: the row as it is
        if kind == 0:
            row[draw(st.sampled_from(_HEADER))] = draw(_JSON)
        elif kind == 1:
            del row[draw(st.sampled_from(_HEADER))]
        elif kind == 2:
            row[draw(_ANY_TEXT)] = draw(_JSON)
        line = json.dumps(row).encode()
        if kind == 3:
            line = (
                draw(st.binary(max_size=20))
                if draw(st.booleans())
                else json.dumps(draw(_JSON)).encode()
            )
        lines.append(line.replace(b"\n", b" "))
    return b"\n".join(lines)


def _read(name: str, body: bytes, mapping: ColumnMapping | None) -> None:
    """Read ``body`` as file ``name``: every event valid, or one ValueError naming the file."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / name
        path.write_bytes(body)
        try:
            events = list(read_event_log(path, mapping))
        except ValueError as exc:
            # a line's fault names the line; the header's (a column missing) the file
            assert re.match(rf"{re.escape(str(path))}(:\d+)?: \S", str(exc)), str(exc)
            return
    for event in events:
        assert event.user_id and event.item_id, event
        assert math.isfinite(event.timestamp), event


@settings(max_examples=300, deadline=None)
@given(table=_table(), suffix=st.sampled_from([".csv", ".tsv", ".txt", ".dat"]))
def test_generated_rating_files_give_events_or_an_error_naming_the_line(
    table: tuple[bytes, ColumnMapping], suffix: str
) -> None:
    _read(f"ratings{suffix}", *table)


@settings(max_examples=300, deadline=None)
@given(body=_jsonl())
def test_generated_jsonl_files_give_events_or_an_error_naming_the_line(body: bytes) -> None:
    _read("events.jsonl", body, None)


@settings(max_examples=300, deadline=None)
@given(body=_review_dump())
def test_generated_review_dumps_give_events_or_an_error_naming_the_line(body: bytes) -> None:
    _read("reviews.jsonl", body, MOVIELENS)
