"""Public rating dumps read as they come: files without a header line (MovieLens's
``u.data``), ``::``-separated ones (MovieLens 1M's ``ratings.dat``) and JSON Lines review
dumps whose keys a mapping names (Amazon's, Yelp's)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recoil.core.events import InteractionEvent
from simulator.logs import parse_mapping, read_event_log

U_DATA = parse_mapping("header=no,user_id=1,item_id=2,rating=3,timestamp=4")


def _read(path: Path, mapping: str) -> list[InteractionEvent]:
    return list(read_event_log(path, parse_mapping(mapping)))


def _error(path: Path, mapping: str) -> str:
    with pytest.raises(ValueError) as info:
        _read(path, mapping)
    return str(info.value)


def _signature(e: InteractionEvent) -> tuple[object, ...]:
    return (e.user_id, e.item_id, e.creator_id, e.timestamp, e.liked, e.disliked)


def test_u_data_without_a_header_reads_from_its_first_line(tmp_path: Path) -> None:
    path = tmp_path / "u.data"
    path.write_text("196\t242\t3\t881250949\n186\t302\t5\t891717742\n22\t377\t1\t878887116\n")
    events = list(read_event_log(path, U_DATA))
    # the 3-star row is neither like nor dislike: no event
    assert [_signature(e) for e in events] == [
        ("186", "302", "302", 891717742.0, True, False),
        ("22", "377", "377", 878887116.0, False, True),
    ]
    # event ids count lines from 1: the first line is data
    assert [e.event_id.rsplit(":", 1)[1] for e in events] == ["000000000002", "000000000003"]


def test_ratings_dat_splits_on_double_colons(tmp_path: Path) -> None:
    path = tmp_path / "ratings.dat"
    path.write_text("1::1193::5::978300760\r\n1::661::2::978302109\r\n")
    events = _read(path, "header=no,user_id=1,item_id=2,rating=3,timestamp=4")
    assert [_signature(e) for e in events] == [
        ("1", "1193", "1193", 978300760.0, True, False),
        ("1", "661", "661", 978302109.0, False, True),
    ]


def test_a_double_colon_file_with_a_header_maps_by_name(tmp_path: Path) -> None:
    path = tmp_path / "ratings.dat"
    path.write_text("user::movie::stars::when\n7::a::4::5\n")
    (event,) = _read(path, "user_id=user,item_id=movie,rating=stars,timestamp=when")
    assert _signature(event) == ("7", "a", "a", 5.0, True, False)


def test_header_no_names_positions_the_file_lacks(tmp_path: Path) -> None:
    path = tmp_path / "u.data"
    path.write_text("196\t242\t3\t881250949\n")
    message = _error(path, "header=no,user_id=1,item_id=2,rating=3,timestamp=5")
    assert message == (
        f"{path}: the mapping names columns the file lacks: ['5']; its first line has 4 fields"
    )


def test_header_no_rows_must_match_the_first_lines_width(tmp_path: Path) -> None:
    path = tmp_path / "u.data"
    path.write_text("196\t242\t3\t881250949\n186\t302\t5\n")
    message = _error(path, "header=no,user_id=1,item_id=2,rating=3,timestamp=4")
    assert message == f"{path}:2: 3 fields, the first line has 4"


def test_a_data_first_line_suggests_header_no(tmp_path: Path) -> None:
    path = tmp_path / "u.data"
    path.write_text("196\t242\t3\t881250949\n")
    message = _error(path, "user_id=user_id,item_id=item_id,rating=rating,timestamp=timestamp")
    assert "--map header=no,user_id=1,item_id=2,rating=3,timestamp=4" in message


@pytest.mark.parametrize("value", ["maybe", "false", "0"])
def test_header_takes_yes_or_no(value: str) -> None:
    with pytest.raises(ValueError, match="mapping header must be 'yes' or 'no'"):
        parse_mapping(f"header={value}")


AMAZON = "user_id=reviewerID,item_id=asin,rating=overall,timestamp=unixReviewTime"


def test_a_review_dump_in_json_lines_maps_by_key(tmp_path: Path) -> None:
    rows = [
        {"reviewerID": "A1", "asin": "B0", "overall": 5.0, "unixReviewTime": 1389744000,
         "reviewText": "x" * 20_000, "style": {"Format:": "Kindle"}},
        {"reviewerID": "A1", "asin": "B1", "overall": 3.0, "unixReviewTime": 1389744001},
        {"reviewerID": "A2", "asin": "B0", "overall": 1, "unixReviewTime": 1389744002},
    ]  # fmt: skip
    path = tmp_path / "reviews.jsonl.gz"
    with gzip.open(path, "wt") as out:
        out.write("\n".join(json.dumps(r) for r in rows) + "\n\n")
    events = _read(path, AMAZON)
    # the long review and the nested key the mapping does not name are not read
    assert [_signature(e) for e in events] == [
        ("A1", "B0", "B0", 1389744000.0, True, False),
        ("A2", "B0", "B0", 1389744002.0, False, True),
    ]


def test_json_lines_values_read_as_table_fields(tmp_path: Path) -> None:
    """Numbers as their JSON text, true/false as flags, null as an empty field (here a
    creator: the item is its own), ISO dates as dates."""
    path = tmp_path / "log.json"
    row = {"user": 7, "business": 123, "owner": None, "date": "2016-03-09 00:44:42",
           "liked": True, "hated": False}  # fmt: skip
    path.write_text(json.dumps(row) + "\n")
    mapping = "user_id=user,item_id=business,creator_id=owner,timestamp=date,liked=liked"
    mapping += ",disliked=hated"
    (event,) = _read(path, mapping)
    assert _signature(event) == ("7", "123", "123", 1457484282.0, True, False)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"reviewerID": "A1", "asin": "B0", "overall": 5}', "no key 'unixReviewTime'"),
        ('{"reviewerID": ["A1"], "asin": "B0", "overall": 5, "unixReviewTime": 1}',
         "key 'reviewerID' holds a JSON list"),
        ("[1, 2]", "expected a JSON object, got list"),
        ('{"reviewerID": "A1", ', "line is not JSON"),
        ('{"reviewerID": "A1", "asin": "B0", "overall": "five", "unixReviewTime": 1}',
         "column 'overall' must be a finite number, got 'five'"),
    ],
)  # fmt: skip
def test_bad_json_lines_name_file_line_and_reason(tmp_path: Path, line: str, reason: str) -> None:
    path = tmp_path / "reviews.jsonl"
    good = {"reviewerID": "A0", "asin": "B9", "overall": 4, "unixReviewTime": 1}
    path.write_text(json.dumps(good) + "\n" + line + "\n")
    message = _error(path, AMAZON)
    assert message.startswith(f"{path}:2: ")
    assert reason in message


def test_a_json_line_over_a_mebibyte_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "reviews.jsonl"
    row = {"reviewerID": "A0", "asin": "B9", "overall": 4, "unixReviewTime": 1}
    long = {**row, "reviewText": "x" * (1 << 20)}
    path.write_text(json.dumps(row) + "\n" + json.dumps(long) + "\n")
    assert _error(path, AMAZON).startswith(f"{path}:2: the line is over {1 << 20} bytes")


def test_header_no_on_json_lines_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "reviews.jsonl"
    path.write_text('{"reviewerID": "A0", "asin": "B9", "overall": 4, "unixReviewTime": 1}\n')
    message = _error(path, "header=no,user_id=1,item_id=2,rating=3,timestamp=4")
    assert message.startswith(f"{path}: header=no is for CSV/TSV files")


_ID = st.text("abcXYZ0123456789_-", min_size=1, max_size=8)
_ROW = st.tuples(_ID, _ID, st.integers(1, 2_000_000_000), st.integers(1, 5))


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(_ROW, min_size=1, max_size=20), sep=st.sampled_from([",", "\t", ";", "::"]))
def test_with_or_without_a_header_the_same_events(
    tmp_path_factory: pytest.TempPathFactory, rows: list[tuple[str, str, int, int]], sep: str
) -> None:
    folder = tmp_path_factory.mktemp("formats")
    lines = [sep.join(str(v) for v in row) for row in rows]
    named, bare = folder / "named.csv", folder / "bare.csv"
    named.write_text("\n".join([sep.join(["u", "i", "t", "r"]), *lines]) + "\n")
    bare.write_text("\n".join(lines) + "\n")
    with_header = _read(named, "user_id=u,item_id=i,timestamp=t,rating=r")
    without = _read(bare, "header=no,user_id=1,item_id=2,timestamp=3,rating=4")
    assert [_signature(e) for e in without] == [_signature(e) for e in with_header]
    expected = [(u, i, i, float(t), r >= 4, r <= 2) for u, i, t, r in rows if r != 3]
    assert [_signature(e) for e in without] == expected
