"""Hand-laid catalogues for the probe's tests, whose shares are then known exactly."""

from __future__ import annotations

from simulator.catalog import Catalog


def block_catalog(items: int, per_creator: int, per_cluster: int) -> Catalog:
    """Items ``i0 .. i<items - 1>`` in blocks: item ``j`` is by creator
    ``c<j // per_creator>`` in cluster ``k<j // per_cluster>`` and lasts ``10 + j % 7`` s."""
    return Catalog(
        item_ids=tuple(f"i{j}" for j in range(items)),
        creator_ids=tuple(f"c{j // per_creator}" for j in range(items)),
        cluster_ids=tuple(f"k{j // per_cluster}" for j in range(items)),
        durations=tuple(10.0 + j % 7 for j in range(items)),
    )
