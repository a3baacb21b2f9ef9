"""The CSV/TSV and JSON Lines reader on files from the wild: read right, or one line
that says what to fix.

Before: a semicolon-separated file, or a header "u, i, t", read as lacking every mapped
column; a line of spaces or a spreadsheet's ",,," row stopped the read; a gzip file was
"not UTF-8" at line 1 with a screen of escapes; an empty file "lacked" the columns; a
label "1.0" (pandas' writing of 1 in a column with gaps) was refused; an empty timestamp
read as 0 ("'timestamp' is 0.0"); millisecond times read as seconds were taken silently
(year 55,000); an empty creator field stopped the read where a missing creator column
is each item its own creator; ``label_like`` without ``label`` was ignored, every row
then neither like nor dislike; and a file name that is not UTF-8, or a long one, made
every default event id ("NAME:LINE") invalid.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from recoil.core.events import MAX_ID_CHARS, InteractionEvent
from simulator.logs import ColumnMapping, parse_mapping, read_event_log
from tests.support.cli import config_error

MAP = "user_id=u,item_id=i,creator_id=c,timestamp=t,label=label,label_like=1,label_dislike=-1"
HEADER = "u,i,c,t,label\n"
ROWS = "1,10,5,1700000000,1\n2,20,6,1700000001,-1\n"
JSONL = (
    b'{"event_id":"e","user_id":"u","item_id":"i","creator_id":"c","timestamp":5,'
    b'"surface":"s","dwell_seconds":1,"item_duration_seconds":2,"liked":true,'
    b'"disliked":false,"dismissed":false,"schema_version":1}\n'
)


def _read(path: Path, data: bytes, mapping: str | None = MAP) -> list[InteractionEvent]:
    path.write_bytes(data)
    return list(read_event_log(path, None if mapping is None else parse_mapping(mapping)))


def _error(path: Path, data: bytes, mapping: str | None = MAP) -> str:
    with pytest.raises(ValueError) as info:
        _read(path, data, mapping)
    message = str(info.value)
    assert message.startswith(f"{path}"), message  # names the file
    return message


def _summary(events: list[InteractionEvent]) -> list[tuple[object, ...]]:
    return [(e.user_id, e.item_id, e.creator_id, e.timestamp, e.liked, e.disliked) for e in events]


EXPECTED = [
    ("1", "10", "5", 1_700_000_000.0, True, False),
    ("2", "20", "6", 1_700_000_001.0, False, True),
]


@pytest.mark.parametrize(
    "text",
    [
        HEADER.replace(",", ";") + ROWS.replace(",", ";"),  # European spreadsheets
        "u, i, c, t, label\n" + ROWS,  # spaces after the delimiters of the header
        HEADER + ROWS + "   \n\t\n,,,,\n \r\n",  # blank rows, a spreadsheet's empty row
        "\ufeff" + (HEADER + ROWS).replace("\n", "\r\n"),  # Windows: BOM and CRLF
        HEADER.replace("\n", ",,\n") + ROWS.replace("\n", ",,\n"),  # two unnamed columns
        HEADER + ROWS.replace(",1\n", ",1.0\n").replace(",-1\n", ", -1.0\n"),  # float labels
    ],
)
def test_common_file_shapes_read_as_the_plain_csv(tmp_path: Path, text: str) -> None:
    assert _summary(_read(tmp_path / "log.csv", text.encode())) == EXPECTED


@pytest.mark.parametrize(
    ("name", "compress"),
    [("log.csv.gz", gzip.compress), ("log.csv.bz2", bz2.compress), ("log.csv.xz", lzma.compress),
     ("log.csv", gzip.compress)],  # known by its first bytes, not its name
)  # fmt: skip
def test_compressed_files_read_as_they_decompress(
    tmp_path: Path, name: str, compress: Callable[[bytes], bytes]
) -> None:
    assert _summary(_read(tmp_path / name, compress((HEADER + ROWS).encode()))) == EXPECTED


def test_a_compressed_jsonl_file_is_json_lines(tmp_path: Path) -> None:
    (event,) = _read(tmp_path / "events.jsonl.gz", gzip.compress(JSONL), mapping=None)
    assert (event.event_id, event.timestamp) == ("e", 5.0)


def test_a_damaged_compressed_file_names_the_file(tmp_path: Path) -> None:
    body = gzip.compress((HEADER + ROWS * 2000).encode())
    message = _error(tmp_path / "log.csv.gz", body[: len(body) // 2])
    assert "the compressed file is damaged or cut short" in message


@pytest.mark.parametrize(
    ("data", "advice"),
    [
        (b"PK\x03\x04rest", "a zip archive"),
        (b"\x28\xb5\x2f\xfd....", "zstd-compressed"),
        (b"PAR1....", "a Parquet file"),
        ((HEADER + ROWS).encode("utf-16"), "UTF-16 text: save it as UTF-8"),
        (b"", "the file is empty"),
        (b"\r\n", "the file is empty"),
    ],
)
def test_files_that_are_no_text_log_say_what_to_do(
    tmp_path: Path, data: bytes, advice: str
) -> None:
    assert advice in _error(tmp_path / "log.csv", data)


def test_missing_columns_show_the_header(tmp_path: Path) -> None:
    message = _error(tmp_path / "log.csv", b"u|i|c|t|label\n1|10|5|1700000000|1\n")
    assert "the header has ['u|i|c|t|label']" in message
    assert "is the delimiter other than comma, tab, semicolon or '::'" in message


def test_a_label_between_the_two_values_suggests_a_rating_mapping(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    data = (HEADER + ROWS + "3,30,7,1700000002,0\n").encode()
    message = _error(path, data)
    assert message.startswith(f"{path}:4: column 'label' is '0'")
    hint = "rating=label,rating_like=1,rating_dislike=-1"
    assert hint in message
    # and the suggestion works: the 0 row is skipped
    mapping = "user_id=u,item_id=i,creator_id=c,timestamp=t," + hint
    assert _summary(_read(path, data, mapping)) == EXPECTED
    # a word is no number between the two: no hint that could not work
    assert "rating=" not in _error(path, (HEADER + "3,30,7,1700000002,like\n").encode())


@pytest.mark.parametrize(
    ("stamp", "mapping", "message"),
    [
        ("", MAP, ":2: column 't' is empty"),
        ("2024-13-01", MAP, "must be a number or an ISO 8601 date, got '2024-13-01'"),
        ("nan", MAP, "'timestamp' must be finite, got nan"),
    ],
)  # fmt: skip
def test_bad_timestamps_say_what_to_fix(
    tmp_path: Path, stamp: str, mapping: str, message: str
) -> None:
    data = f"{HEADER}1,10,5,{stamp},1\n".encode()
    assert message in _error(tmp_path / "log.csv", data, mapping)


@pytest.mark.parametrize(
    ("stamp", "mapping", "message"),
    [
        ("1700000000000", MAP, "log.csv:3: timestamp 1700000000000.0 is after the year 3000 "
         "read as seconds; milliseconds? add time_unit=ms to the mapping"),
        ("1700000000000000", MAP + ",time_unit=ms", "read as milliseconds; is the unit right?"),
    ],
)  # fmt: skip
def test_times_after_the_year_3000_are_read_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, stamp: str, mapping: str, message: str
) -> None:
    """Milliseconds read as seconds stretch every gap, but the order holds: a warning,
    once a file, not a refusal that would stop a backtest of a file that is fine."""
    data = f"{HEADER}1,10,5,1700000000,1\n1,11,5,{stamp},1\n1,12,5,{stamp}9,-1\n".encode()
    with caplog.at_level("WARNING", logger="simulator.logs"):
        events = _read(tmp_path / "log.csv", data, mapping)
    assert [e.item_id for e in events] == ["10", "11", "12"]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and message in warnings[0], warnings


def test_json_lines_times_after_the_year_3000_are_read_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The event schema has seconds: a JSON Lines export in milliseconds is warned about
    once, as a table is."""
    lines = [JSONL.replace(b'"timestamp":5', f'"timestamp":{t}'.encode()) for t in
             (1_700_000_000, 1_700_000_000_000, 1_700_000_000_001)]  # fmt: skip
    with caplog.at_level("WARNING", logger="simulator.logs"):
        events = _read(tmp_path / "events.jsonl", b"".join(lines), mapping=None)
    assert len(events) == 3
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1, warnings
    assert (
        "events.jsonl:2: timestamp 1700000000000.0 is after the year 3000 read as seconds; "
        "milliseconds? the event schema's timestamp is in seconds" in warnings[0]
    )


def test_events_at_one_time_keep_the_files_order(tmp_path: Path) -> None:
    """Default ids sort as the lines do (recoil.core.windows breaks ties by event id):
    line 10 after line 9, as the replay sends them."""
    rows = "".join(f"1,{n},5,1700000000,1\n" for n in range(12))  # lines 2..13, one time
    events = _read(tmp_path / "log.csv", (HEADER + rows).encode())
    assert sorted(events, key=lambda e: (e.timestamp, e.event_id)) == events


def test_millisecond_times_with_time_unit_ms_read(tmp_path: Path) -> None:
    data = f"{HEADER}1,10,5,1700000000123,1\n".encode()
    (event,) = _read(tmp_path / "log.csv", data, MAP + ",time_unit=ms")
    assert event.timestamp == pytest.approx(1_700_000_000.123)


@pytest.mark.parametrize(
    ("stamp", "seconds"),
    [
        ("2023-11-14T22:13:20Z", 1_700_000_000.0),
        ("2023-11-14 22:13:20", 1_700_000_000.0),  # no offset: UTC, on any host
        ("2023-11-14T23:13:20+01:00", 1_700_000_000.0),
        ("2023-11-14T22:13:20.5", 1_700_000_000.5),
        ("2023-11-14", 1_699_920_000.0),
        ("20231114T221320Z", 1_700_000_000.0),  # ISO 8601's basic form
        ("20231114", 20_231_114.0),  # a number is seconds, as it always was
    ],
)  # fmt: skip
def test_iso_8601_dates_read_as_seconds(tmp_path: Path, stamp: str, seconds: float) -> None:
    (event,) = _read(tmp_path / "log.csv", f"{HEADER}1,10,5,{stamp},1\n".encode())
    assert event.timestamp == seconds


def test_dates_and_numbers_mix_in_one_file(tmp_path: Path) -> None:
    rows = "1,10,5,2023-11-14T22:13:21Z,1\n1,11,5,1700000000,-1\n"
    events = _read(tmp_path / "log.csv", (HEADER + rows).encode())
    assert [(e.item_id, e.timestamp) for e in events] == [("10", 1.7e9 + 1), ("11", 1.7e9)]


def test_an_empty_creator_is_the_items_own(tmp_path: Path) -> None:
    (event,) = _read(tmp_path / "log.csv", f"{HEADER}1,10,,1700000000,1\n".encode())
    assert event.creator_id == "10"


def test_ids_stay_text(tmp_path: Path) -> None:
    (event,) = _read(tmp_path / "log.csv", f"{HEADER}007,0010,05,1700000000,1\n".encode())
    assert (event.user_id, event.item_id, event.creator_id) == ("007", "0010", "05")


@pytest.mark.parametrize("name", [os.fsdecode(b"caf\xe9.csv"), "x" * 240 + ".csv", "données.csv"])
def test_any_file_name_gives_valid_default_ids(tmp_path: Path, name: str) -> None:
    events = _read(tmp_path / name, (HEADER + ROWS * 6).encode())  # lines up to 13
    assert len(events) == 12
    assert all(len(e.event_id) <= MAX_ID_CHARS for e in events)
    assert len({e.event_id for e in events}) == 12
    assert events[-1].event_id.endswith(":000000000013")
    events[-1].event_id.encode("utf-8")  # no lone surrogate


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("user_id=u,item_id=i,timestamp=t,label_like=1,label_dislike=-1",
         "mapping gives label_like and label_dislike but no label column: add label=COLUMN"),
        ("user_id=u,item_id=i,timestamp=t,rating_like=4",
         "mapping gives rating_like but no rating column: add rating=COLUMN"),
        ("label=l,label_like=1,label_dislike=1.0",
         "are both '1' and '1.0', the same number"),  # a "1.0" field would be either
    ],
)  # fmt: skip
def test_mappings_that_cannot_mean_what_they_say_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_mapping(text)
    assert message in str(info.value)


def test_a_preset_keeps_its_column_for_changed_values() -> None:
    assert parse_mapping("movielens,rating_like=3.5").rating_like == "3.5"
    assert parse_mapping("kuairand,label_like=1").label == "label"


def test_a_directory_is_said_to_be_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(FileNotFoundError, match="a directory, not a log file"):
        list(read_event_log(tmp_path, ColumnMapping()))
    # recoil backtest checks the same way, but only after importing torch (~6 s alone)
    argv = ["replay", str(tmp_path), "--bootstrap-servers", "127.0.0.1:1"]
    assert "a directory, not a log file" in config_error(argv, capsys)


def test_a_file_without_newlines_is_refused_before_it_fills_memory(tmp_path: Path) -> None:
    message = _error(tmp_path / "log.csv", b"u,i,t" + b"x" * (1 << 21))
    assert message.startswith(f"{tmp_path / 'log.csv'}:1: the header line is over")


def test_a_text_file_that_starts_with_bzh_is_text_and_a_bad_bzip2_is_damaged(
    tmp_path: Path,
) -> None:
    """Found by the event-log fuzz test: "BZh" alone was taken for bzip2, so a JSON Lines
    file whose first line was "BZh" ended in bz2's OSError instead of the line's error."""
    message = _error(tmp_path / "events.jsonl", b"BZh\n" + JSONL, mapping=None)
    assert "events.jsonl:1:" in message
    bad = bz2.compress(JSONL)[:12] + b"\x00" * 40  # a real header, then garbage
    assert "the compressed file is damaged or cut short" in _error(
        tmp_path / "bad.jsonl", bad, mapping=None
    )
    (event,) = _read(tmp_path / "ok.jsonl", bz2.compress(JSONL), mapping=None)
    assert event.event_id == "e"
    assert _read(tmp_path / "empty.jsonl", bz2.compress(b"\n"), mapping=None) == []
