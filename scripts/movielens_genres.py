"""Add each film's genres to MovieLens-style ratings, as a creator column for backtests.

MovieLens has no creator; a film's genre list ("Comedy|Drama|Romance") is the nearest
grouping of similar items the dataset itself gives, so the creator-level dislike measure
and the creator features have something to read. The ratings are copied as they are
(``--map`` turns the stars into likes and dislikes). Both layouts the dumps come in are
read:

- ``ratings.csv`` and ``movies.csv`` with their header lines (ml-latest-small, ml-25m,
  ml-32m);
- ``ratings.dat`` and ``movies.dat``, ``::``-separated without a header (MovieLens 1M and
  10M, MovieTweetings): ``UserID::MovieID::Rating::Timestamp`` and
  ``MovieID::Title::Genres``, written out under ratings.csv's column names.

::

    python scripts/movielens_genres.py ml-latest-small/ratings.csv ml-latest-small/movies.csv \\
        --out ratings_genres.csv
    recoil backtest ratings_genres.csv --out DIR --map movielens,creator_id=genres
    # MovieTweetings rates 0-10: 7 and above a like, 4 and below a dislike
    python scripts/movielens_genres.py ratings.dat movies.dat --out mt.csv
    recoil backtest mt.csv --out DIR \\
        --map movielens,creator_id=genres,rating_like=7,rating_dislike=4

A rating of a film that the films file lacks gets the genres "(unknown)"; a film listed
without genres gets "(no genres listed)", as ml-latest writes it.
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

UNKNOWN = "(unknown)"
NO_GENRES = "(no genres listed)"
RATING_COLUMNS = ["userId", "movieId", "rating", "timestamp"]


def _is_dat(path: Path) -> bool:
    """Whether the file is the ``::``-separated, headerless layout (its first line tells)."""
    with path.open("rb") as handle:
        return b"::" in handle.readline()


def _dat_rows(path: Path, fields: int) -> Iterator[list[str]]:
    """The ``::``-separated rows of ``path``, each checked to have at least ``fields``
    fields. Read as latin-1, which decodes any byte: MovieLens 1M writes its titles in
    latin-1, MovieTweetings in UTF-8, and only ids, numbers and genres are kept."""
    with path.open(encoding="latin-1", newline="") as handle:
        for number, line in enumerate(handle, 1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            row = line.split("::")
            if len(row) < fields:
                raise SystemExit(
                    f"{path}:{number}: {len(row)} '::'-separated fields, expected {fields}"
                )
            yield row


def genres_by_film(movies: Path) -> dict[str, str]:
    """movieId -> its genre list, as the films file writes it."""
    if _is_dat(movies):
        return {row[0]: row[-1] or NO_GENRES for row in _dat_rows(movies, 3)}
    with movies.open(newline="", encoding="utf-8") as handle:
        return {row["movieId"]: row["genres"] or NO_GENRES for row in csv.DictReader(handle)}


@contextmanager
def ratings(path: Path) -> Iterator[tuple[list[str], Iterator[dict[str, str]]]]:
    """The ratings file's columns and rows, under ratings.csv's names."""
    if _is_dat(path):
        yield (
            RATING_COLUMNS,
            (dict(zip(RATING_COLUMNS, r[:4], strict=True)) for r in _dat_rows(path, 4)),
        )
        return
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or "movieId" not in reader.fieldnames:
            raise SystemExit(f"{path}: no movieId column; is it MovieLens's ratings.csv?")
        yield list(reader.fieldnames), iter(reader)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ratings", type=Path, help="ratings.csv or ratings.dat")
    parser.add_argument("movies", type=Path, help="movies.csv or movies.dat")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    genres = genres_by_film(args.movies)
    with (
        ratings(args.ratings) as (columns, rows),
        args.out.open("w", newline="", encoding="utf-8") as target,
    ):
        writer = csv.DictWriter(target, [*columns, "genres"])
        writer.writeheader()
        count = 0
        for row in rows:
            writer.writerow({**row, "genres": genres.get(row["movieId"], UNKNOWN)})
            count += 1
    print(f"{count:,} ratings written to {args.out}")


if __name__ == "__main__":
    main()
