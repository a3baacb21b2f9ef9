"""The ``--map`` argument of the commands that read a logged event file (``recoil
backtest``, ``recoil replay``): one text, so both describe the same reader
(``simulator.logs``)."""

from __future__ import annotations

import argparse

MAP_HELP = (
    "how the file's columns become event fields (fields of simulator.logs.ColumnMapping), "
    "e.g. 'user_id=uid,item_id=video_id,timestamp=ts,liked=is_like,disliked=is_hate,"
    "time_unit=ms', or a star rating ('...,rating=stars,rating_like=4,rating_dislike=2': "
    "rows in between are skipped), or a preset: 'kuairand', 'movielens' (MovieLens's "
    "ratings.csv), whose fields entries after it change ('movielens,creator_id=genres'). "
    "CSV/TSV columns by their header's names (comma, tab, semicolon or '::'); a file "
    "without a header line by position with header=no (MovieLens's u.data: "
    "'header=no,user_id=1,item_id=2,rating=3,timestamp=4'); JSON Lines objects by their "
    "keys (without --map a .jsonl file is read in the event schema). A file without a "
    "creator column gets creator_id = item_id."
)


def add_map_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--map", default=None, metavar="FIELD=COLUMN,...", help=MAP_HELP)
