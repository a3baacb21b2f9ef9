"""The event-log reader turns every bad input into ``ValueError("FILE:LINE: reason")``.

Before, deep JSON nesting (RecursionError), a CSV field past the csv module's limit
(``_csv.Error``) escaped both ``recoil backtest`` and ``recoil replay`` as tracebacks;
invalid UTF-8 and a number of more digits than ``int()`` reads gave one line without
file or line; a UTF-8 byte order mark hid the first column's name; a repeated header
name silently took the last column; and ``--map`` accepted the same value for like and
dislike, and empty column names.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from simulator.logs import ColumnMapping, parse_mapping, read_event_log

EVENT = {
    "event_id": "e1", "user_id": "u", "item_id": "i", "creator_id": "c", "timestamp": 1000.0,
    "surface": "home", "dwell_seconds": 3.0, "item_duration_seconds": 10.0, "liked": True,
    "disliked": False, "dismissed": False, "schema_version": 1,
}  # fmt: skip
GOOD = json.dumps(EVENT).encode()


def _with_number(field: str, digits: int) -> bytes:
    """The event with ``field`` an integer of ``digits + 1`` digits."""
    text = json.dumps({**EVENT, field: 0})
    return text.replace(f'"{field}": 0', f'"{field}": 1{"0" * digits}').encode()


def _error(path: Path, mapping: ColumnMapping | None = None) -> str:
    with pytest.raises(ValueError) as info:
        list(read_event_log(path, mapping))
    return str(info.value)


@pytest.mark.parametrize(
    ("lines", "line", "reason"),
    [
        ([b"[" * 100_000], 1, "event is 100000 bytes"),  # was a RecursionError
        ([b"[" * 5000], 1, "event JSON is nested too deeply"),  # within the size limit
        ([GOOD, _with_number("timestamp", 400)], 2, "'timestamp' must be finite, got an integer"),
        ([_with_number("dwell_seconds", 400)], 1, "'dwell_seconds' must be finite"),
        ([_with_number("timestamp", 5000)], 1, "event JSON holds a number json cannot read"),
        ([GOOD, b'{"event_id": "\xff"}'], 2, "event is not UTF-8"),
        ([GOOD, b"", GOOD[:-1]], 3, "event is not JSON"),  # blank lines still count
    ],
)
def test_bad_jsonl_lines_name_file_and_line(
    tmp_path: Path, lines: list[bytes], line: int, reason: str
) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert _error(path).startswith(f"{path}:{line}: {reason}")


MAPPING = ColumnMapping()  # user_id, item_id, timestamp


@pytest.mark.parametrize(
    ("body", "line", "reason"),
    [
        (b"1,a,5\n2," + b"b" * 200_000 + b",6\n", 3, "not CSV: field larger than field limit"),
        (b'1,a,5\n2,"open quote,6\n' + b"x" * 140_000 + b"\n", 3, "not CSV: field larger"),
        (b"1,a,5\n2,b\xff,6\n", 3, r"not UTF-8: byte 0xff in 'b\udcff'"),
        (b"1,a,1" + b"0" * 5000 + b"\n", 2, "'timestamp' must be finite, got inf"),
    ],
)
def test_bad_csv_rows_name_file_and_line(
    tmp_path: Path, body: bytes, line: int, reason: str
) -> None:
    path = tmp_path / "log.csv"
    path.write_bytes(b"user_id,item_id,timestamp\n" + body)
    assert _error(path, MAPPING).startswith(f"{path}:{line}: {reason}")


def test_a_header_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "log.tsv"
    path.write_bytes(b"user_id\titem_id\ttimestamp\xe9\n1\ta\t5\n")
    assert _error(path, MAPPING).startswith(f"{path}:1: not UTF-8: byte 0xe9")


def test_a_repeated_header_name_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,timestamp,item_id,x,x\n1,a,5,b,0,0\n")
    message = _error(path, MAPPING)
    assert message.startswith(f"{path}:1: the header names columns more than once")
    assert "['item_id', 'x']" in message


@pytest.mark.parametrize(
    "first", ["196\t242\t3\t881250949", "1\t1\t4.0\t964982703", "186\t302\t3\t891717742"]
)
def test_a_file_without_a_header_line_is_told_so(tmp_path: Path, first: str) -> None:
    """MovieLens's u.data has no header: its first row is read as one, and whichever
    error that causes (a number named twice, the mapping's columns missing, or no mapping
    for a header that is not KuaiRand's) says the first line looks like data."""
    path = tmp_path / "u.data"
    path.write_text(f"{first}\n196\t242\t3\t881250950\n")
    for mapping in (MAPPING, None):  # None: the header is asked to be KuaiRand's
        message = _error(path, mapping)
        assert message.startswith(f"{path}")
        assert "every name in it is a number: is the first line data?" in message


def test_a_header_of_numbers_is_read_when_mapped(tmp_path: Path) -> None:
    """pandas writes 0,1,2 as the header of unnamed columns: a legal header, mapped by name."""
    path = tmp_path / "log.csv"
    path.write_text("0,1,2\n7,a,5\n")
    mapping = parse_mapping("user_id=0,item_id=1,timestamp=2")
    (event,) = read_event_log(path, mapping)
    assert (event.user_id, event.item_id, event.timestamp) == ("7", "a", 5.0)


def test_a_named_header_gets_no_data_line_hint(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,timestamp,item_id\n1,a,5,b\n")
    assert "is the first line data" not in _error(path, MAPPING)


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path: Path, suffix: str) -> None:
    sep = "\t" if suffix == ".tsv" else ","
    path = tmp_path / f"log{suffix}"
    path.write_bytes(f"\ufeffuser_id{sep}item_id{sep}timestamp\n7{sep}a{sep}5\n".encode())
    (event,) = read_event_log(path, MAPPING)
    assert (event.user_id, event.item_id, event.timestamp) == ("7", "a", 5.0)


def test_jsonl_with_a_byte_order_mark_reads(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD + b"\n" + GOOD + b"\n")
    events = list(read_event_log(path))
    assert len(events) == 2 and events[0].event_id == "e1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("label=lbl,label_like=1,label_dislike=1", "label_like and label_dislike are both '1'"),
        ("label=lbl,label_like=0", "label_like and label_dislike are both '0'"),
        ("user_id=", "mapping entry 'user_id=' is empty: give user_id=COLUMN"),
        ("timestamp= ", "mapping entry 'timestamp=' is empty"),
        ("creator_id=", "mapping entry 'creator_id=' is empty"),
        ("surface=", "give surface=VALUE"),
        ("user_id=a,user_id=b", "mapping field 'user_id' is given twice"),
    ],
)
def test_bad_mappings_are_refused_when_parsed(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_mapping(text)


@pytest.mark.parametrize("field", ["user_id", "item_id", "timestamp"])
def test_a_mapping_must_name_the_required_columns(field: str) -> None:
    with pytest.raises(ValueError, match=f"mapping {field} must name a column"):
        ColumnMapping(**{field: ""})  # type: ignore[arg-type]  # wrong on purpose


def test_distinct_label_values_still_map(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("uid,vid,ts,lbl\n1,a,5,like\n1,b,6,hate\n")
    mapping = parse_mapping("user_id=uid,item_id=vid,timestamp=ts,label=lbl,label_like=like,"
                            "label_dislike=hate")  # fmt: skip
    like, hate = read_event_log(path, mapping)
    assert (like.liked, like.disliked, hate.liked, hate.disliked) == (True, False, False, True)
