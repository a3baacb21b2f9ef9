"""scripts/movielens_genres.py: MovieLens's ratings with each film's genres as its creator,
read back through the rating mapping the docs give."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from simulator.logs import parse_mapping, read_event_log

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "movielens_genres.py"
MAPPING = "user_id=userId,item_id=movieId,timestamp=timestamp,rating=rating,creator_id=genres"


def test_genres_become_the_creator_and_stars_the_labels(tmp_path: Path) -> None:
    ratings, movies, out = tmp_path / "ratings.csv", tmp_path / "movies.csv", tmp_path / "g.csv"
    ratings.write_text(
        "userId,movieId,rating,timestamp\n"
        "1,1,5.0,964982703\n1,2,3.0,964981247\n1,3,1.5,964982224\n2,99,4.5,964983815\n"
    )
    movies.write_text(
        "movieId,title,genres\n"
        '1,Toy Story (1995),Adventure|Animation\n2,"Jumanji, The (1995)",Fantasy\n'
        "3,Heat (1995),Action|Crime\n"
    )
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(ratings), str(movies), "--out", str(out)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "4 ratings written" in done.stdout
    events = list(read_event_log(out, parse_mapping(MAPPING)))
    assert [(e.item_id, e.creator_id, e.liked, e.disliked) for e in events] == [
        ("1", "Adventure|Animation", True, False),
        ("3", "Action|Crime", False, True),
        ("99", "(unknown)", True, False),
    ]


def test_a_file_that_is_not_ratings_is_refused(tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_text("user,item\n1,2\n")
    (tmp_path / "m.csv").write_text("movieId,title,genres\n")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "r.csv"), str(tmp_path / "m.csv"),
         "--out", str(tmp_path / "o.csv")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode != 0 and "no movieId column" in done.stderr


def _run(*args: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(args[0]), str(args[1]), "--out", str(args[2])],
        capture_output=True, text=True,
    )  # fmt: skip


def test_the_dat_layout_reads_as_the_csv_one(tmp_path: Path) -> None:
    """MovieLens 1M's ``::`` files (latin-1 titles) and MovieTweetings' (0-10 ratings, a
    film without genres) come out under ratings.csv's columns, read by the movielens
    preset."""
    ratings, movies, out = tmp_path / "ratings.dat", tmp_path / "movies.dat", tmp_path / "g.csv"
    ratings.write_text("1::1193::5::978300760\n1::661::1::978302109\n2::3408::4::978300275\n")
    movies.write_bytes(
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
        "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
        "3408::Erin Brockovich (2000)::\n"
        "3409::Le Dîner de cons (1998)::Comedy\n".encode("latin-1")
    )
    done = _run(ratings, movies, out)
    assert done.returncode == 0, done.stderr
    assert out.read_text().splitlines()[0] == "userId,movieId,rating,timestamp,genres"
    events = list(read_event_log(out, parse_mapping("movielens,creator_id=genres")))
    assert [(e.user_id, e.item_id, e.creator_id, e.liked, e.disliked) for e in events] == [
        ("1", "1193", "Drama", True, False),
        ("1", "661", "Animation|Children's|Musical", False, True),
        ("2", "3408", "(no genres listed)", True, False),
    ]
    ten = parse_mapping("movielens,creator_id=genres,rating_like=7,rating_dislike=4")
    ratings.write_text("7::0068646::10::1381620027\n7::0113277::4::1379466669\n")
    movies.write_text("0068646::The Godfather (1972)::Crime|Drama\n")
    assert _run(ratings, movies, out).returncode == 0
    assert [(e.creator_id, e.liked, e.disliked) for e in read_event_log(out, ten)] == [
        ("Crime|Drama", True, False),
        ("(unknown)", False, True),
    ]


def test_a_short_dat_line_is_refused_with_its_file_and_line(tmp_path: Path) -> None:
    ratings, movies = tmp_path / "ratings.dat", tmp_path / "movies.dat"
    ratings.write_text("1::1193::5::978300760\n1::661\n")
    movies.write_text("1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n")
    done = _run(ratings, movies, tmp_path / "o.csv")
    assert done.returncode != 0
    assert f"{ratings}:2: 2 '::'-separated fields, expected 4" in done.stderr
