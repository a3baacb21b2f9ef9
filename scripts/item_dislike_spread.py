"""How much items differ in how often they are disliked, in a ratings file or a world.

Over the items with at least ``--min-rated`` likes and dislikes, each item's share of
dislikes among them varies for two reasons: binomial noise (few ratings) and items
that really are disliked more (clickbait, a bad film). The script takes the first out
(the standard deviation of the items' true shares) and prints the second as the spread
of the items' dislike log-odds: the ``sigma`` for which shares ``sigmoid(mu + sigma z)``,
``z`` standard normal, have the measured mean and standard deviation. Log-odds compare
files and worlds whose dislike rates differ (KuaiRand's is under 1%, MovieLens's 17%).
The world's ``dislike_propensity_scale`` was calibrated with it (simulator/world.py):

    python scripts/item_dislike_spread.py --file ratings.csv --map movielens
    python scripts/item_dislike_spread.py --world medium --seed 0
"""

from __future__ import annotations

import argparse
import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from recoil.core.events import InteractionEvent
from simulator.logged_data import simulate_logs
from simulator.logs import parse_mapping, read_event_log
from simulator.policy import LoggingPolicyConfig
from simulator.world import WORLD_PRESETS, World, world_preset


@dataclass(frozen=True)
class ItemSpread:
    items: int  # items with at least min_rated likes and dislikes
    rated: int  # their likes and dislikes
    share: float  # p: dislikes among them
    observed_std: float  # std of the items' dislike shares
    true_std: float  # ... with the binomial variance taken out (0 if it is all noise)

    @property
    def logit_sigma(self) -> float:
        """The spread of the items' dislike log-odds (module docstring)."""
        return logit_normal_sigma(self.share, self.true_std)


_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(80)  # E[f(z)], z ~ N(0, 1)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()


def _logit_normal(mu: float, sigma: float) -> tuple[float, float]:
    """Mean and standard deviation of ``sigmoid(mu + sigma z)``."""
    p = 1.0 / (1.0 + np.exp(-(mu + sigma * _NODES)))
    mean = float(_WEIGHTS @ p)
    return mean, math.sqrt(max(float(_WEIGHTS @ (p - mean) ** 2), 0.0))


def _bisect(f: Callable[[float], float], lo: float, hi: float) -> float:
    """The root of increasing ``f`` in [lo, hi] (an end if there is none inside)."""
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) < 0 else (lo, mid)
    return (lo + hi) / 2


def logit_normal_sigma(mean: float, std: float) -> float:
    """The ``sigma`` of log-odds ``N(mu, sigma^2)`` whose shares have this mean and std."""

    def std_at(sigma: float) -> float:  # with mu chosen so that the mean is right
        mu = _bisect(lambda m: _logit_normal(m, sigma)[0] - mean, -30.0, 30.0)
        return _logit_normal(mu, sigma)[1] - std

    return _bisect(std_at, 0.0, 10.0)


def item_spread(counts: Iterable[tuple[int, int]], min_rated: int) -> ItemSpread:
    """From ``(rated, disliked)`` per item; pure."""
    kept = np.array([(n, d) for n, d in counts if n >= min_rated], dtype=float).reshape(-1, 2)
    if len(kept) < 2 or kept[:, 1].sum() == 0:
        raise ValueError(f"need two items with {min_rated}+ ratings and a dislike among them")
    n, d = kept[:, 0], kept[:, 1]
    p = float(d.sum() / n.sum())
    shares = d / n
    noise = float(np.mean(p * (1 - p) / n))  # the binomial part of the shares' variance
    observed = float(shares.var())
    return ItemSpread(len(kept), int(n.sum()), p, math.sqrt(observed),
                      math.sqrt(max(observed - noise, 0.0)))  # fmt: skip


def rated_counts(events: Iterable[InteractionEvent]) -> list[tuple[int, int]]:
    """``(likes + dislikes, dislikes)`` per item; events neither liked nor disliked
    (a world's plain impressions) do not count, as in an explicit-ratings file."""
    rated: Counter[str] = Counter()
    disliked: Counter[str] = Counter()
    for event in events:
        if event.liked or event.disliked:
            rated[event.item_id] += 1
            disliked[event.item_id] += event.disliked
    return [(rated[item], disliked[item]) for item in rated]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", help="a ratings file, read as recoil backtest reads it")
    source.add_argument("--world", choices=sorted(WORLD_PRESETS), help="a world's logs")
    parser.add_argument("--map", help="the file's column mapping (as recoil backtest)")
    parser.add_argument("--seed", type=int, default=0, help="the world's seed")
    parser.add_argument("--min-rated", type=int, default=10)
    args = parser.parse_args()
    if args.file:
        mapping = parse_mapping(args.map) if args.map else None
        events: Iterable[InteractionEvent] = read_event_log(args.file, mapping)
        name = args.file
    else:
        world = World(world_preset(args.world, args.seed))
        events = simulate_logs(world, LoggingPolicyConfig(), progress=True).events
        name = f"world {args.world}, seed {args.seed}"
    s = item_spread(rated_counts(events), args.min_rated)
    print(
        f"{name}: {s.items} items with {args.min_rated}+ likes and dislikes ({s.rated} in all), "
        f"dislike share {s.share:.3f}; std of the items' shares {s.observed_std:.3f}, "
        f"beyond binomial noise {s.true_std:.3f}; spread of the items' dislike log-odds "
        f"{s.logit_sigma:.2f}"
    )


if __name__ == "__main__":
    main()
