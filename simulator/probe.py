"""The counterfactual responsiveness probe (paper section 4).

Each simulated user follows a random trajectory: starting from one random
item, it consumes ``k - 1`` items, each picked uniformly from the
recommender's top ``choose_from`` for its history so far, with a random dwell
(ratio uniform in [0, ``max_dwell_ratio``)) and no likes or dislikes. Its
``k``-th item, also recommended, is the *anchor*. The history then branches:

- ``long dwell``:           the anchor watched in full (dwell = duration),
- ``long dwell + dislike``: the same event with ``disliked=True``,

both appended with ``recoil.core.windows.step``, so the two histories are identical
except for the anchor's dislike flag. For each branch the recommender's top
``top_n`` at step ``k + 1`` (seen items excluded) are compared with the anchor:
the share from the anchor's content cluster and from its creator.

    responsiveness = mean(share | dislike) / mean(share | long dwell) - 1

over all simulations (negative: the recommender backs away after a dislike),
with a 95% bootstrap interval resampling simulations.

A recommender that also gives its scores (``ScoringRecommender``) is measured a
second way, in probability mass: the share of its softmax over the unseen items
that falls on the anchor's cluster / creator, in each branch. That is the
quantity of the logs' own yardstick (``logged_data.logged_responsiveness``: how
often the next positive comes from the anchor's cluster), which the top-``top_n``
share need not follow: a model that moves half its mass off a cluster whose items
still outrank every other keeps its top 20 as they were. (On the medium world the
two agree within a few points: docs/experiment.md.) The yardstick averages over the
logged histories, the probe over its own trajectories: other histories. ``measure_responsiveness``
is a pure function of (branched histories, recommender); the trajectories are
batched so each of the ``k`` steps is one ``top_k`` call for all simulations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from tqdm import tqdm

from recoil.core.events import InteractionEvent
from recoil.core.labels import LabelConfig
from recoil.core.records import HistoryItem
from recoil.core.settings import setting
from recoil.core.windows import History, step
from simulator.catalog import Catalog, SameShare
from simulator.metrics import bootstrap_relative_change, relative_change
from simulator.recommender import Recommender, ScoringRecommender, top_k_batched

PROBE_START_TIME = 1_735_689_600.0  # 2025-01-01T00:00:00Z, after any world log
STEP_SECONDS = 30.0  # simulated time between two consumed items
# Far past any probe anyone waits for (the paper's: 2000 simulations, k = 50); numpy
# fails on sizes near 2**63, as a traceback once the arms are trained.
MAX_SIMULATIONS = 1_000_000
MAX_PROBE_K = 10_000


@dataclass(frozen=True)
class ProbeConfig:
    """Probe settings; defaults are the paper's (2000 simulations, k = 50)."""

    simulations: int = setting(2000, "probe simulations")  # independent simulated users
    k: int = setting(50, "probe branch step")  # the branch happens on the k-th consumed item
    top_n: int = 20  # recommendations at step k+1 compared with the anchor
    # A trajectory step picks uniformly among this many top items. With 20 the medium
    # world's trajectories collapse into one cluster (74% of their items in the anchor's
    # cluster, against 22% in logged histories), so the probe asked about histories no
    # user has; 100 gives 18%, like the logs. ``trajectory_cluster_share`` reports it.
    choose_from: int = 100
    max_dwell_ratio: float = 1.2  # trajectory dwell ratios are uniform in [0, this)
    bootstrap: int = 1000  # bootstrap resamples for the 95% intervals
    batch_size: int = 4096  # histories per top_k call
    seed: int = 0  # trajectories and bootstrap are a pure function of it

    def __post_init__(self) -> None:
        if self.simulations < 1 or self.k < 1 or self.top_n < 1 or self.choose_from < 1:
            raise ValueError("ProbeConfig: simulations, k, top_n and choose_from must be >= 1")
        if self.simulations > MAX_SIMULATIONS or self.k > MAX_PROBE_K:
            raise ValueError(
                f"ProbeConfig: simulations must be at most {MAX_SIMULATIONS} and k at most "
                f"{MAX_PROBE_K}, got simulations={self.simulations}, k={self.k}"
            )
        if self.max_dwell_ratio <= 0 or self.bootstrap < 1:
            raise ValueError("ProbeConfig: max_dwell_ratio must be > 0 and bootstrap >= 1")


@dataclass(frozen=True)
class Branches:
    """Per simulation: the anchor item and the two counterfactual histories."""

    anchors: list[str]
    long_dwell: list[History]
    dislike: list[History]


@dataclass(frozen=True)
class Responsiveness:
    """Relative change of similar recommendations after a dislike, with intervals."""

    cluster: float
    creator: float
    ci95_cluster: tuple[float, float]
    ci95_creator: tuple[float, float]
    share_cluster_long_dwell: float  # mean share from the anchor's cluster, no dislike
    share_cluster_dislike: float
    share_creator_long_dwell: float
    share_creator_dislike: float
    simulations: int
    # share of a trajectory's items (before the anchor) from the anchor's cluster: how
    # concentrated the probed histories are (compare with the logged users' histories)
    trajectory_cluster_share: float
    # The same change in probability mass (module docstring); None for a recommender
    # that gives no scores (the live loop's HTTP one).
    mass_cluster: float | None = None
    mass_creator: float | None = None
    ci95_mass_cluster: tuple[float, float] | None = None
    ci95_mass_creator: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def probe_event(
    sim: int, position: int, item: str, catalog: Catalog, dwell_ratio: float, disliked: bool
) -> InteractionEvent:
    """The event of simulated user ``sim`` consuming ``item`` as its ``position``-th item."""
    duration = catalog.durations[catalog.index(item)]
    return InteractionEvent(
        event_id=f"probe{sim}-{position}",
        user_id=f"probe{sim}",
        item_id=item,
        creator_id=catalog.creator_of(item),
        cluster_id=catalog.cluster_of(item),
        timestamp=PROBE_START_TIME + STEP_SECONDS * position,
        surface="probe",
        dwell_seconds=round(dwell_ratio * duration, 3),
        item_duration_seconds=duration,
        liked=False,
        disliked=disliked,
        dismissed=False,
    )


def counterfactual_branches(
    prefixes: Sequence[History], anchors: Sequence[str], catalog: Catalog, labels: LabelConfig
) -> Branches:
    """Append the anchor as a long dwell, and as a long dwell + dislike, to each prefix."""
    if len(prefixes) != len(anchors):
        raise ValueError(f"{len(prefixes)} prefixes for {len(anchors)} anchors")
    long_dwell: list[History] = []
    dislike: list[History] = []
    for sim, (prefix, anchor) in enumerate(zip(prefixes, anchors, strict=True)):
        for disliked, out in ((False, long_dwell), (True, dislike)):
            event = probe_event(sim, len(prefix), anchor, catalog, 1.0, disliked)
            history, _ = step(event, prefix, labels)
            out.append(history)
    return Branches(anchors=list(anchors), long_dwell=long_dwell, dislike=dislike)


def measure_responsiveness(
    branches: Branches,
    recommender: Recommender,
    catalog: Catalog,
    top_n: int,
    rng: np.random.Generator,
    bootstrap: int = 1000,
    batch_size: int = 4096,
) -> Responsiveness:
    """Compare step k+1 recommendations of the two branches (one batched top_k pass)."""
    n = len(branches.anchors)
    histories = [*branches.long_dwell, *branches.dislike]
    recs = top_k_batched(recommender, histories, top_n, exclude_seen=True, batch_size=batch_size)
    base = catalog.same_share(recs[:n], branches.anchors)
    disliked = catalog.same_share(recs[n:], branches.anchors)
    result = Responsiveness(
        cluster=relative_change(base.cluster, disliked.cluster),
        creator=relative_change(base.creator, disliked.creator),
        ci95_cluster=bootstrap_relative_change(base.cluster, disliked.cluster, rng, bootstrap),
        ci95_creator=bootstrap_relative_change(base.creator, disliked.creator, rng, bootstrap),
        share_cluster_long_dwell=float(base.cluster.mean()),
        share_cluster_dislike=float(disliked.cluster.mean()),
        share_creator_long_dwell=float(base.creator.mean()),
        share_creator_dislike=float(disliked.creator.mean()),
        simulations=n,
        trajectory_cluster_share=trajectory_cluster_share(branches, catalog),
    )
    if not isinstance(recommender, ScoringRecommender):
        return result
    # after the share's intervals, so those draw the same resamples as before
    shares = [
        same_mass_batched(recommender, catalog, group, branches.anchors, batch_size)
        for group in (branches.long_dwell, branches.dislike)
    ]
    mass: dict[str, Any] = {}
    for kind in ("cluster", "creator"):
        mass_base, mass_disliked = (getattr(share, kind) for share in shares)
        mass[f"mass_{kind}"] = relative_change(mass_base, mass_disliked)
        mass[f"ci95_mass_{kind}"] = bootstrap_relative_change(
            mass_base, mass_disliked, rng, bootstrap
        )
    return replace(result, **mass)


def unseen_probabilities(
    scores: np.ndarray, item_ids: Sequence[str], histories: Sequence[Sequence[HistoryItem]]
) -> np.ndarray:
    """Softmax of each row of ``scores`` over the items its history has not seen, (B, N)."""
    column = {item: j for j, item in enumerate(item_ids)}
    logits = scores.astype(np.float64)  # a copy: the seen items are masked in place
    for row, history in enumerate(histories):
        seen = [column[h.item_id] for h in history if h.item_id in column]
        logits[row, seen] = -np.inf
    top = logits.max(axis=1, keepdims=True)
    top[~np.isfinite(top)] = 0.0  # a history that has seen every item: no mass anywhere
    weights = np.exp(logits - top)
    total = weights.sum(axis=1, keepdims=True)
    return np.divide(weights, total, out=np.zeros_like(weights), where=total > 0)


def same_mass_batched(
    recommender: ScoringRecommender,
    catalog: Catalog,
    histories: Sequence[History],
    anchors: Sequence[str],
    batch_size: int,
) -> SameShare:
    """``Catalog.same_mass`` of the recommender's unseen-item softmax, at most
    ``batch_size`` rows (and 2**24 scores) at a time."""
    ids = recommender.item_ids()
    rows = max(1, min(batch_size, 2**24 // max(1, len(ids))))  # <= 128 MiB of float64
    parts = []
    for start in range(0, len(histories), rows):
        chunk = histories[start : start + rows]
        probabilities = unseen_probabilities(recommender.scores(chunk), ids, chunk)
        parts.append(catalog.same_mass(probabilities, ids, anchors[start : start + rows]))
    return SameShare(
        cluster=np.concatenate([p.cluster for p in parts]),
        creator=np.concatenate([p.creator for p in parts]),
    )


def trajectory_cluster_share(branches: Branches, catalog: Catalog) -> float:
    """Mean share of each trajectory's items before the anchor from the anchor's cluster."""
    shares = []
    for history, anchor in zip(branches.long_dwell, branches.anchors, strict=True):
        cluster = catalog.cluster_of(anchor)
        before = history[:-1]  # the last item is the anchor itself
        if before:
            shares.append(np.mean([catalog.cluster_of(h.item_id) == cluster for h in before]))
    return float(np.mean(shares)) if shares else 0.0


def random_trajectories(
    recommender: Recommender,
    catalog: Catalog,
    config: ProbeConfig,
    labels: LabelConfig,
    rng: np.random.Generator,
    progress: bool = False,
) -> tuple[list[History], list[str]]:
    """Histories of ``k - 1`` consumed items and the recommended ``k``-th (anchor) item."""
    n = config.simulations
    first = rng.integers(len(catalog), size=n).tolist()
    histories: list[History] = [()] * n
    current = [catalog.item_ids[j] for j in first]
    for position in tqdm(range(config.k - 1), desc="probe trajectories", disable=not progress):
        ratios = (config.max_dwell_ratio * rng.random(n)).tolist()
        for sim in range(n):
            event = probe_event(sim, position, current[sim], catalog, ratios[sim], False)
            histories[sim], _ = step(event, histories[sim], labels)
        recs = top_k_batched(
            recommender, histories, config.choose_from, exclude_seen=True,
            batch_size=config.batch_size,
        )  # fmt: skip
        picks = rng.random(n).tolist()
        for sim, row in enumerate(recs):
            if not row:
                raise ValueError(f"recommender returned no items for simulation {sim}")
            current[sim] = row[math.floor(picks[sim] * len(row))]
    return histories, current


def run_probe(
    recommender: Recommender,
    catalog: Catalog,
    config: ProbeConfig,
    labels: LabelConfig,
    progress: bool = False,
) -> Responsiveness:
    """Random trajectories, the two branches, and the responsiveness with 95% intervals."""
    rng = np.random.default_rng([config.seed, 3])
    prefixes, anchors = random_trajectories(recommender, catalog, config, labels, rng, progress)
    branches = counterfactual_branches(prefixes, anchors, catalog, labels)
    return measure_responsiveness(
        branches, recommender, catalog, config.top_n, rng, config.bootstrap, config.batch_size
    )
