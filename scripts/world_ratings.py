"""Write a synthetic world's logs as a ratings file, to backtest it like real ratings.

Only likes (label 1) and dislikes (label -1) are kept and dwell is dropped, as in
an explicit-ratings dataset (1-2 stars as dislikes, 4-5 as likes). The file reads
back through ``recoil backtest FILE --map`` exactly as such a dataset does:

    python scripts/world_ratings.py --world aversion --seed 0 --out ratings.csv
    recoil backtest ratings.csv --out DIR --map user_id=user_id,item_id=item_id,\\
        creator_id=creator_id,timestamp=timestamp,label=label,label_like=1,label_dislike=-1
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import replace
from pathlib import Path

from simulator.logged_data import simulate_logs
from simulator.policy import LoggingPolicyConfig
from simulator.world import WORLD_PRESETS, World, world_preset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", choices=sorted(WORLD_PRESETS), default="aversion")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--steps", type=int, default=300, help="impressions per user (~90 rated at aversion)"
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    world = World(replace(world_preset(args.world, args.seed), steps_per_user=args.steps))
    rows = dislikes = 0
    with args.out.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["user_id", "item_id", "creator_id", "timestamp", "label"])
        for e in simulate_logs(world, LoggingPolicyConfig(), progress=True).events:
            if e.liked or e.disliked:
                label = -1 if e.disliked else 1
                out.writerow([e.user_id, e.item_id, e.creator_id, int(e.timestamp), label])
                rows += 1
                dislikes += e.disliked
    print(f"{rows} ratings, {dislikes / max(rows, 1):.1%} dislikes -> {args.out}")


if __name__ == "__main__":
    main()
