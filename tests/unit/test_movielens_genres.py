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
