"""Reading event logs: KuaiRand's TSV, mapped CSV, JSONL, and clear errors for bad rows."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from recoil.core.events import InteractionEvent
from simulator.logs import KUAIRAND, MOVIELENS, ColumnMapping, parse_mapping, read_event_log

KUAIRAND_FILE = (
    Path(__file__).parents[2] / ".." / "shared" / "data" / "kuairand_k15_likes_hates.tsv"
)
HEADER = (
    "user_id\tvideo_id\tdate\thourmin\ttime_ms\tis_click\tis_follow\tis_comment\tis_forward\t"
    "long_view\tplay_time_ms\tduration_ms\tcomment_stay_time\tis_profile_enter\tlabel\ttimestamp"
)


def test_reads_the_real_kuairand_file() -> None:
    events = read_event_log(KUAIRAND_FILE.resolve())
    first = next(events)
    assert first == InteractionEvent(
        event_id="kuairand_k15_likes_hates.tsv:000000000002",
        user_id="111",
        item_id="3892024",
        creator_id="3892024",  # no creator column: each item is its own creator
        cluster_id=None,
        timestamp=1649581149.287,
        surface="kuairand",
        dwell_seconds=46.186,
        item_duration_seconds=45.916,
        liked=True,
        disliked=False,
        dismissed=False,
    )
    rest = list(events)
    assert len(rest) + 1 == 41_828
    assert sum(e.disliked for e in rest) == 8_083  # the README's hate count
    assert sum(e.liked for e in rest) + 1 == 33_745


def test_kuairand_dislike_row(tmp_path: Path) -> None:
    path = tmp_path / "k.tsv"
    row = (
        "7\t42\t20220410\t1700\t1649581149000\t1\t0\t0\t0\t0\t900\t0\t0\t0\t0\t2022-04-10 08:59:09"
    )
    path.write_text(f"{HEADER}\n{row}\n")
    (event,) = read_event_log(path)
    assert (event.liked, event.disliked, event.item_duration_seconds) == (False, True, 0.0)
    assert event.dwell_seconds == 0.9 and event.timestamp == 1649581149.0


def test_mapped_csv(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text(
        "uid,vid,ts,who,watch,len,like,hate\n1,a,100,c9,5,10,1,0\n1,b,160,c9,0.5,10,0,1\n"
    )
    mapping = parse_mapping(
        "user_id=uid,item_id=vid,timestamp=ts,creator_id=who,dwell_seconds=watch,"
        "item_duration_seconds=len,liked=like,disliked=hate"
    )
    first, second = read_event_log(path, mapping)
    assert (first.user_id, first.item_id, first.creator_id, first.liked) == ("1", "a", "c9", True)
    assert (second.disliked, second.dwell_seconds) == (True, 0.5)
    assert second.event_id == "log.csv:000000000003"


def test_star_ratings_split_into_likes_and_dislikes(tmp_path: Path) -> None:
    """MovieLens's own header and half stars: 4 and above a like, 2 and below a dislike,
    a middling rating no event at all (its line is not reused by the next event)."""
    path = tmp_path / "ratings.csv"
    path.write_text(
        "userId,movieId,rating,timestamp\n"
        "1,31,2.5,1260759144\n1,1029,4.0,1260759179\n1,1061,2.0,1260759182\n"
        "1,1129,0.5,1260759185\n1,1172,3.5,1260759205\n1,1263,5,1260759151\n"
    )
    events = list(read_event_log(path, parse_mapping("movielens")))
    assert [(e.item_id, e.liked, e.disliked) for e in events] == [
        ("1029", True, False), ("1061", False, True), ("1129", False, True), ("1263", True, False)
    ]  # fmt: skip
    assert [e.event_id for e in events] == [f"ratings.csv:{n:012d}" for n in (3, 4, 5, 7)]
    assert {e.creator_id for e in events} == {e.item_id for e in events}
    custom = parse_mapping(
        "user_id=userId,item_id=movieId,timestamp=timestamp,rating=rating,"
        "rating_like=3.5,rating_dislike=2.5"
    )
    assert len(list(read_event_log(path, custom))) == 6


def test_a_rating_that_is_no_number_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "ratings.csv"
    path.write_text("userId,movieId,rating,timestamp\n1,31,4,1260759144\n1,32,inf,1260759145\n")
    with pytest.raises(ValueError, match=r"ratings.csv:3: column 'rating' must be a finite number"):
        list(read_event_log(path, MOVIELENS))


def test_jsonl_round_trip(tmp_path: Path) -> None:
    event = InteractionEvent(
        "e1", "u", "i", "c", 1000.0, "home", 3.0, 10.0, False, True, False, "k"
    )
    path = tmp_path / "events.jsonl"
    path.write_bytes(event.to_json() + b"\n\n" + event.to_json() + b"\n")
    assert list(read_event_log(path)) == [event, event]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("user_id", "not FIELD=COLUMN"),
        ("colour=red", "unknown mapping field 'colour'"),
        ("time_unit=hours", "time_unit must be 's' or 'ms'"),
        ("label=l,liked=x", "one of label, rating or liked/disliked"),
        ("rating=r,disliked=x", "one of label, rating or liked/disliked"),
        ("rating=r,label=l", "one of label, rating or liked/disliked"),
        ("rating=r,rating_like=good", "rating_like must be a finite number, got 'good'"),
        ("rating=r,rating_dislike=nan", "rating_dislike must be a finite number"),
        ("rating=r,rating_like=3,rating_dislike=3", r"rating_dislike \(3\) must be below"),
        ("creator_id=genres,movielens", "preset 'movielens' must come first"),
        ("movielens,label=l", "one of label, rating or liked/disliked"),
    ],
)
def test_bad_mappings_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_mapping(text)


def test_builtin_mapping_by_name() -> None:
    assert parse_mapping("KuaiRand") is KUAIRAND
    assert parse_mapping(" movielens ") is MOVIELENS
    assert ColumnMapping().columns() == ["user_id", "item_id", "timestamp"]


def test_a_preset_with_changes() -> None:
    """A preset's name first, then entries that change its fields: MovieLens's ratings
    with the genres column scripts/movielens_genres.py adds as the creator."""
    mapping = parse_mapping("movielens, creator_id=genres,rating_like=3.5")
    assert mapping == replace(MOVIELENS, creator_id="genres", rating_like="3.5")
    assert mapping.columns() == ["userId", "movieId", "timestamp", "genres", "rating"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("1,a,100,x\n", r"log.csv:2: column 'like' must be 0/1"),
        ("1,a,yesterday,1\n", r"log.csv:2: column 'ts' must be a number or an ISO 8601 date"),
        ("1,a,100\n", r"log.csv:2: 3 fields, the header has 4"),
        ("1,,100,1\n", r"log.csv:2: 'item_id' must not be empty"),
        ("1,a,-5,1\n", r"log.csv:2: 'timestamp' is -5.0"),
    ],
)
def test_bad_rows_name_file_line_and_reason(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "log.csv"
    path.write_text("uid,vid,ts,like\n" + body)
    mapping = parse_mapping("user_id=uid,item_id=vid,timestamp=ts,liked=like")
    with pytest.raises(ValueError, match=message):
        list(read_event_log(path, mapping))


def test_unmapped_table_and_missing_columns_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="give a column mapping"):
        list(read_event_log(path))
    with pytest.raises(ValueError, match=r"lacks: \['user_id', 'item_id', 'timestamp'\]"):
        list(read_event_log(path, ColumnMapping()))
    with pytest.raises(FileNotFoundError):
        list(read_event_log(tmp_path / "nope.csv"))
