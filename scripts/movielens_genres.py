"""Add each film's genres to MovieLens's ratings.csv, as a creator column for backtests.

MovieLens has no creator; a film's genre list ("Comedy|Drama|Romance") is the nearest
grouping of similar items the dataset itself gives, so the creator-level dislike measure
and the creator features have something to read. The ratings are copied as they are
(``--map`` turns the stars into likes and dislikes):

    python scripts/movielens_genres.py ml-latest-small/ratings.csv ml-latest-small/movies.csv \\
        --out ratings_genres.csv
    recoil backtest ratings_genres.csv --out DIR --map \\
        user_id=userId,item_id=movieId,timestamp=timestamp,rating=rating,creator_id=genres

A rating of a film that movies.csv lacks gets the genres "(unknown)".
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

UNKNOWN = "(unknown)"


def genres_by_film(movies: Path) -> dict[str, str]:
    """movieId -> its genre list, as movies.csv writes it."""
    with movies.open(newline="", encoding="utf-8") as handle:
        return {row["movieId"]: row["genres"] for row in csv.DictReader(handle)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ratings", type=Path, help="MovieLens ratings.csv")
    parser.add_argument("movies", type=Path, help="MovieLens movies.csv")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    genres = genres_by_film(args.movies)
    with (
        args.ratings.open(newline="", encoding="utf-8") as source,
        args.out.open("w", newline="", encoding="utf-8") as target,
    ):
        reader = csv.DictReader(source)
        if reader.fieldnames is None or "movieId" not in reader.fieldnames:
            raise SystemExit(f"{args.ratings}: no movieId column; is it MovieLens's ratings.csv?")
        writer = csv.DictWriter(target, [*reader.fieldnames, "genres"])
        writer.writeheader()
        rows = 0
        for row in reader:
            writer.writerow({**row, "genres": genres.get(row["movieId"], UNKNOWN)})
            rows += 1
    print(f"{rows:,} ratings written to {args.out}")


if __name__ == "__main__":
    main()
