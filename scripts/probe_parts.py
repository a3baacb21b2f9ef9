"""Which part of a live snapshot answers a dislike: the flag's path through the
encoder, or the push. Probes each version of a store as it is, with the push off
(a = 0), with the flag off (the disliked row read as the plain one), and with both
off (which must read 0: the two branches are then the same input).

    python scripts/probe_parts.py STORE VERSION [VERSION ...]

STORE is a feature_and_labels snapshot store of the tiny world's loop (seed 0), e.g.
the ``snapshots/feature_and_labels`` of ``scripts/loop_probe.py``'s WORKDIR. The
probe is the live one's (k = 20, top 10) with 600 simulations, run in-process.
Used for docs/experiment.md, "An untrained flag means nothing".
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import torch

from learner.snapshot import Snapshot, load_snapshot
from recoil.core.labels import LabelConfig
from recoil.core.records import EXCLUDE_SEEN, HistoryItem
from simulator.probe import ProbeConfig, run_probe
from simulator.world import World, world_preset

VARIANTS = ("as is", "no push", "no flag", "neither")
CATALOG = World(world_preset("tiny", 0)).catalog  # the loop's world (seed 0)
PROBE = ProbeConfig(simulations=600, k=20, top_n=10, choose_from=10, bootstrap=200, seed=0)


class SnapshotTopK:
    """A snapshot as the probe's ``Recommender``."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def top_k(
        self, histories: Sequence[Sequence[HistoryItem]], k: int, exclude_seen: bool = EXCLUDE_SEEN
    ) -> list[list[str]]:
        return [[i for i, _ in r] for r in self.snapshot.recommend(histories, k, exclude_seen)]


def probe_variant(store: str, version: int, variant: str) -> tuple[float, float]:
    """(creator, cluster) responsiveness of one version with the parts of ``variant`` off."""
    snapshot = load_snapshot(store, version)
    model = snapshot.model
    with torch.no_grad():
        if variant in ("no push", "neither") and model.dislike_push is not None:
            model.dislike_push.weight.zero_()
        if variant in ("no flag", "neither"):
            model.dislike_input.weight[1] = model.dislike_input.weight[0]
    result = run_probe(SnapshotTopK(snapshot), CATALOG, PROBE, LabelConfig())
    return result.creator, result.cluster


def main(store: str, versions: list[int]) -> None:
    print("version | " + " | ".join(f"{v} (creator / cluster)" for v in VARIANTS))
    for version in versions:
        cells = [probe_variant(store, version, v) for v in VARIANTS]
        print(version, "|", " | ".join(f"{c:+.3f} / {k:+.3f}" for c, k in cells), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], [int(v) for v in sys.argv[2:]])
