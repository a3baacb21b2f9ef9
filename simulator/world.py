"""A seeded synthetic world: items, creators, content clusters and users with tastes.

Structure: item ``j`` belongs to creator ``j // items_per_creator``; creator
``c`` to cluster ``c // creators_per_cluster``. A user has latent tastes:

    interest(u, i) = cluster_taste[u, k] + creator_scale * <p_u, q_c> / sqrt(d) + quality[i]

with ``cluster_taste`` a normal draw plus a bonus on a few favourite clusters.

Users are explicit state transitions, recsim_ng style, with an explicit
``numpy.random.Generator``:

- ``initial_state(user)``: a fresh user with no memory of past dislikes.
- ``next_response(state, item, rng)``: the reaction to one shown item. The user
  *watches* with probability ``sigmoid(engage_bias + interest - annoyance)``;
  a watch has a dwell ratio in [0.6, 1.3) (most are long dwells), otherwise
  the user skips (ratio < 0.1) or leaves part way. A watched item is liked with
  probability ``sigmoid(like_bias + interest)``. The user *dislikes*, drawn
  independently of the dwell, with probability

      sigmoid(dislike_bias - dislike_interest_slope * interest + objection(u, c)
              + propensity[i] + creator_dislike_boost * m_c + cluster_dislike_boost * m_k)

  so a dislike can follow a long dwell (the user watched, then objected),
  ``objection(u, c) = objection_scale * <o_u, r_c> / sqrt(d_o)`` captures
  creators a user objects to whatever their interest, and ``propensity[i]`` (std
  ``dislike_propensity_scale``) items that any user is more or less likely to
  dislike: clickbait, a bad film. Real logs have them: fitted as log-odds
  ``N(mu, sigma^2)`` over the items with 10+ likes and dislikes, binomial noise taken
  out (``scripts/item_dislike_spread.py``), items' dislike shares spread with sigma
  1.75 in MovieLens and 1.17 in the KuaiRand file; the medium world without
  propensity gives 0.68, with ``dislike_propensity_scale = 1.5`` 1.20
  (``dislike_bias`` lowered to -5.8 keeps ~2.4% of impressions disliked). The
  ``medium`` and ``large`` presets have it (docs/experiment.md, "Items that
  anyone may dislike"); the others keep 0, as their recorded figures were made.
- Aversions (the ``aversion`` preset): each user has ``aversion_clusters``
  clusters whose items draw them in (``aversion_watch_bonus`` on the watch
  logit) and that they then dislike (``aversion_dislike_boost`` on the dislike
  logit), mostly after watching them through, like a film rated one star after
  the credits. Such an item in the history looks like a watched favourite to a
  model that ignores the dislike flag, and pulls its recommendations towards
  more of what the user dislikes: the pattern measured on held-out ratings,
  where dropping disliked items from the history cut disliked-item hits by 37%
  and raised positive hits. Other presets have none.
- ``next_state(state, response, item)``: a dislike is remembered (creator,
  cluster, step). ``m_c`` and ``m_k`` are the remembered dislikes of the shown
  item's creator and cluster, each decayed by ``0.5 ** (age / memory_half_life)``:
  a user who disliked a creator tends to dislike it again, and skips it more.

Ids on the wire: users ``u{n}``, items ``i{n}``, creators ``c{n}``, clusters ``k{n}``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from simulator.catalog import Catalog


@dataclass(frozen=True)
class WorldConfig:
    """Sizes and response parameters of a world; every default is documented."""

    name: str = "custom"  # preset name, for reports
    num_clusters: int = 20  # content clusters (topics)
    creators_per_cluster: int = 10  # each creator publishes in one cluster
    items_per_creator: int = 10  # each creator's catalogue size
    num_users: int = 500
    steps_per_user: int = 120  # impressions logged per user by the logging policy
    seed: int = 0  # latent parameters and logs are a pure function of the seed
    # --- tastes ---
    favourite_clusters: int = 3  # clusters each user is drawn to
    favourite_bonus: float = 2.0  # logit bonus of a favourite cluster
    cluster_taste_scale: float = 0.5  # std of the rest of a user's cluster tastes
    creator_taste_scale: float = 0.8  # std of the user-creator affinity
    latent_dim: int = 8  # rank of the user-creator affinity
    quality_scale: float = 0.3  # std of an item's own appeal
    objection_scale: float = 1.5  # std of the user-creator objection (dislike-only)
    objection_dim: int = 4  # rank of the objection term
    dislike_propensity_scale: float = 0.0  # std of an item's own dislike logit (any user)
    # --- responses ---
    engage_bias: float = -1.0  # watch logit at interest 0: an average item is watched ~27%
    skip_share: float = 0.75  # of unwatched impressions, the share skipped (< 10% dwell)
    like_bias: float = -3.0  # like logit of a watched item at interest 0
    dislike_bias: float = -5.0  # dislike logit at interest 0, no objection, no memory
    dislike_interest_slope: float = 0.5  # lower interest -> more dislikes
    creator_dislike_boost: float = 2.5  # dislike logit added by a remembered creator dislike
    cluster_dislike_boost: float = 1.0  # same for a remembered dislike in the cluster
    creator_engage_penalty: float = 2.0  # watch logit removed per remembered creator dislike
    cluster_engage_penalty: float = 1.0  # same for the cluster
    memory_half_life: float = 200.0  # impressions until a remembered dislike weighs half
    memory_size: int = 16  # most recent dislikes a user remembers
    median_duration: float = 20.0  # seconds; item durations are log-normal around it
    # --- aversions (0 in every preset but "aversion") ---
    aversion_clusters: int = 0  # clusters a user is drawn to but dislikes
    aversion_watch_bonus: float = 0.0  # watch logit added on an aversion cluster
    aversion_dislike_boost: float = 0.0  # dislike logit added on an aversion cluster

    def __post_init__(self) -> None:
        for name in ("num_clusters", "creators_per_cluster", "items_per_creator", "num_users"):
            if getattr(self, name) < 1:
                raise ValueError(f"WorldConfig.{name} must be >= 1")
        if self.steps_per_user < 2:
            raise ValueError("WorldConfig.steps_per_user must be >= 2")
        if not 0 <= self.favourite_clusters <= self.num_clusters:
            raise ValueError("WorldConfig.favourite_clusters must be in [0, num_clusters]")
        if not 0 <= self.aversion_clusters <= self.num_clusters - self.favourite_clusters:
            raise ValueError(
                "WorldConfig.aversion_clusters must be in [0, num_clusters - favourite_clusters]"
            )
        if not 0.0 <= self.skip_share <= 1.0:
            raise ValueError("WorldConfig.skip_share must be in [0, 1]")
        if self.memory_half_life <= 0 or self.memory_size < 1:
            raise ValueError("WorldConfig.memory_half_life must be > 0 and memory_size >= 1")

    @property
    def num_creators(self) -> int:
        return self.num_clusters * self.creators_per_cluster

    @property
    def num_items(self) -> int:
        return self.num_creators * self.items_per_creator

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sized(name: str, clusters: int, creators: int, items: int, users: int,
           steps: int) -> WorldConfig:  # fmt: skip
    """A world of ``clusters`` x ``creators`` per cluster x ``items`` per creator."""
    return WorldConfig(
        name=name, num_clusters=clusters, creators_per_cluster=creators,
        items_per_creator=items, num_users=users, steps_per_user=steps,
    )  # fmt: skip


def _with_propensity(world: WorldConfig) -> WorldConfig:
    """Items that any user may dislike: a spread of 1.20 in log-odds, between KuaiRand's
    1.17 and MovieLens's 1.75 (module docstring)."""
    return replace(world, dislike_propensity_scale=1.5, dislike_bias=-5.8)


# Presets: tiny runs in seconds (tests); medium is `recoil experiment`'s default and
# fits the 30-minute budget on 2 CPU cores; large is the scale the issue names.
_SMALL = _sized("small", 20, 10, 10, users=600, steps=120)
WORLD_PRESETS: dict[str, WorldConfig] = {
    world.name: world
    for world in (
        _sized("tiny", 6, 5, 6, users=60, steps=60),
        _SMALL,
        _with_propensity(_sized("medium", 50, 10, 10, users=2500, steps=150)),
        _with_propensity(_sized("large", 100, 100, 10, users=10_000, steps=200)),
        # small's size with aversions: the real-data pattern (docs/experiment.md).
        replace(
            _SMALL,
            name="aversion",
            aversion_clusters=2,
            aversion_watch_bonus=2.0,
            aversion_dislike_boost=3.0,
        ),
    )
}


def world_preset(name: str, seed: int = 0) -> WorldConfig:
    """A preset by name with the given seed; a clear error for unknown names."""
    try:
        return replace(WORLD_PRESETS[name], seed=seed)
    except KeyError:
        raise ValueError(f"unknown world {name!r}; choose one of {sorted(WORLD_PRESETS)}") from None


@dataclass(frozen=True, slots=True)
class SimulatedUserState:
    """What a simulated user carries between impressions."""

    user: int
    step: int  # impressions seen so far
    disliked: tuple[tuple[int, int, int], ...]  # (creator, cluster, step) of recent dislikes


@dataclass(frozen=True, slots=True)
class Response:
    """A user's reaction to one shown item."""

    dwell_ratio: float  # dwell / item duration; < 0.1 is a skip, >= 0.8 a long dwell
    liked: bool
    disliked: bool


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


class World:
    """Latent parameters drawn once from ``config.seed``, and the user transitions."""

    def __init__(self, config: WorldConfig) -> None:
        self.config = config
        rng = np.random.default_rng([config.seed, 0x5EED])
        n_users, n_clusters = config.num_users, config.num_clusters
        n_creators, n_items = config.num_creators, config.num_items
        self.item_creator = np.arange(n_items) // config.items_per_creator  # (I,)
        self.creator_cluster = np.arange(n_creators) // config.creators_per_cluster  # (C,)
        self.item_cluster = self.creator_cluster[self.item_creator]  # (I,)
        taste = config.cluster_taste_scale * rng.standard_normal((n_users, n_clusters))
        # Aversions draw from their own stream: worlds without them stay exactly as before.
        aversion_rng = np.random.default_rng([config.seed, 0xA7E5])
        self.aversion = np.zeros((n_users, n_clusters), dtype=bool)  # (U, K)
        for u in range(n_users):
            favourites = rng.choice(n_clusters, size=config.favourite_clusters, replace=False)
            taste[u, favourites] += config.favourite_bonus
            if config.aversion_clusters:
                others = np.setdiff1d(np.arange(n_clusters), favourites)
                averse = aversion_rng.choice(others, size=config.aversion_clusters, replace=False)
                self.aversion[u, averse] = True
        self.cluster_taste = taste  # (U, K)
        d, d_o = config.latent_dim, config.objection_dim
        self.user_vec = rng.standard_normal((n_users, d)) / math.sqrt(d)  # (U, d)
        self.creator_vec = config.creator_taste_scale * rng.standard_normal((n_creators, d))
        self.user_obj = rng.standard_normal((n_users, d_o)) / math.sqrt(d_o)  # (U, d_o)
        self.creator_obj = config.objection_scale * rng.standard_normal((n_creators, d_o))
        self.quality = config.quality_scale * rng.standard_normal(n_items)  # (I,)
        # Its own stream, like the aversions: a world without it stays exactly as before.
        propensity_rng = np.random.default_rng([config.seed, 0xD15])
        self.dislike_propensity = config.dislike_propensity_scale * propensity_rng.standard_normal(
            n_items
        )  # (I,)
        durations = config.median_duration * np.exp(0.6 * rng.standard_normal(n_items))
        self.durations = np.clip(durations, 3.0, 300.0).round(1)  # (I,) seconds
        self.catalog = Catalog(
            item_ids=tuple(f"i{j}" for j in range(n_items)),
            creator_ids=tuple(f"c{c}" for c in self.item_creator.tolist()),
            cluster_ids=tuple(f"k{k}" for k in self.item_cluster.tolist()),
            durations=tuple(self.durations.tolist()),
        )
        self._decay = math.log(0.5) / config.memory_half_life

    # --- latent quantities (pure, for tests and reports) ---

    def interest(self, user: int, item: int) -> float:
        """How much ``user`` likes ``item`` before any memory of dislikes."""
        c = int(self.item_creator[item])
        return float(
            self.cluster_taste[user, self.item_cluster[item]]
            + self.user_vec[user] @ self.creator_vec[c]
            + self.quality[item]
        )

    def objection(self, user: int, item: int) -> float:
        """How much ``user`` objects to the item's creator, independent of interest."""
        c = int(self.item_creator[item])
        return float(self.user_obj[user] @ self.creator_obj[c])

    def memory(self, state: SimulatedUserState, item: int) -> tuple[float, float]:
        """Decayed remembered dislikes of the item's creator and of its cluster."""
        creator, cluster = int(self.item_creator[item]), int(self.item_cluster[item])
        m_creator = m_cluster = 0.0
        for c, k, when in state.disliked:
            weight = math.exp(self._decay * (state.step - when))
            # The strongest (most recent) memory counts, so repeated dislikes do not
            # compound into a user who can only ever dislike that creator.
            if c == creator:
                m_creator = max(m_creator, weight)
            if k == cluster:
                m_cluster = max(m_cluster, weight)
        return m_creator, m_cluster

    def watch_probability(self, state: SimulatedUserState, item: int) -> float:
        cfg = self.config
        m_c, m_k = self.memory(state, item)
        logit = (
            cfg.engage_bias
            + self.interest(state.user, item)
            + cfg.aversion_watch_bonus * self.averse(state.user, item)
            - cfg.creator_engage_penalty * m_c
            - cfg.cluster_engage_penalty * m_k
        )
        return _sigmoid(logit)

    def averse(self, user: int, item: int) -> bool:
        """Whether the item is in one of the user's aversion clusters."""
        return bool(self.aversion[user, self.item_cluster[item]])

    def like_probability(self, state: SimulatedUserState, item: int) -> float:
        """Probability of a like given the item was watched."""
        return _sigmoid(self.config.like_bias + self.interest(state.user, item))

    def dislike_probability(self, state: SimulatedUserState, item: int) -> float:
        cfg = self.config
        m_c, m_k = self.memory(state, item)
        logit = (
            cfg.dislike_bias
            - cfg.dislike_interest_slope * self.interest(state.user, item)
            + self.objection(state.user, item)
            + self.dislike_propensity[item]
            + cfg.aversion_dislike_boost * self.averse(state.user, item)
            + cfg.creator_dislike_boost * m_c
            + cfg.cluster_dislike_boost * m_k
        )
        return _sigmoid(logit)

    # --- the user as a state machine ---

    def initial_state(self, user: int) -> SimulatedUserState:
        if not 0 <= user < self.config.num_users:
            raise ValueError(f"user {user} is outside [0, {self.config.num_users})")
        return SimulatedUserState(user=user, step=0, disliked=())

    def next_response(
        self, state: SimulatedUserState, item: int, rng: np.random.Generator
    ) -> Response:
        """Draw the reaction to ``item``; uses exactly four draws from ``rng``."""
        watch_u, dwell_u, like_u, dislike_u = rng.random(4).tolist()
        watched = watch_u < self.watch_probability(state, item)
        if watched:
            ratio = 0.6 + 0.7 * dwell_u  # [0.6, 1.3): replays can exceed the duration
        elif dwell_u < self.config.skip_share:
            ratio = 0.1 * dwell_u / self.config.skip_share  # [0, 0.1): a skip
        else:
            ratio = 0.1 + 0.5 * (dwell_u - self.config.skip_share) / (1 - self.config.skip_share)
        disliked = dislike_u < self.dislike_probability(state, item)
        liked = watched and not disliked and like_u < self.like_probability(state, item)
        return Response(dwell_ratio=ratio, liked=liked, disliked=disliked)

    def next_state(
        self, state: SimulatedUserState, response: Response, item: int
    ) -> SimulatedUserState:
        disliked = state.disliked
        if response.disliked:
            entry = (int(self.item_creator[item]), int(self.item_cluster[item]), state.step)
            disliked = (*disliked, entry)[-self.config.memory_size :]
        return SimulatedUserState(user=state.user, step=state.step + 1, disliked=disliked)
