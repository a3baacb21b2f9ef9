"""Run the live loop as tests/integration/test_loop.py does, for one seed, until
feature_and_labels has been probed at version MAX_VERSION; print each of its probes
and the push weights of the version it probed.

    python scripts/loop_probe.py SEED MAX_VERSION WORKDIR

Starts its own embedded broker. Used for docs/experiment.md's table of live
models (one seed's run takes 3-5 minutes on 2 cores).
"""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

from learner.snapshot import SnapshotError, load_snapshot
from recoil.broker.embedded import EmbeddedKafka
from recoil.core.kafka_settings import KafkaSettings
from recoil.core.processes import ProcessGroup
from recoil.loop import Loop, LoopConfig

TIMEOUT_S = 900


def push_weights(store: Path, version: int) -> str:
    """The snapshot's push weights a of the four newest ages ('-' if it was pruned)."""
    try:
        model = load_snapshot(store, version).model
    except SnapshotError:
        return "-"
    return " ".join(f"{a:+.2f}" for a in model.push_weights()[:4].tolist())


def main(seed: int, max_version: int, workdir: Path) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    broker = EmbeddedKafka()
    broker.start()
    try:
        config = LoopConfig(
            workdir=workdir, arms=("feature_and_labels", "no_signal"), seed=seed,
            topic_suffix=f".loop-{uuid.uuid4().hex[:8]}", rate=200.0,
            snapshot_every_seconds=30.0, snapshot_every_steps=100_000, probe_simulations=150,
        )  # fmt: skip
        started = time.monotonic()
        with ProcessGroup(workdir / "logs") as group:
            loop = Loop(config, KafkaSettings(broker.bootstrap_servers), group)
            loop.start()
            while time.monotonic() - started < TIMEOUT_S:
                group.check()
                versions = [
                    int(r["model_version"])
                    for r in loop.probe_results()
                    if r["arm"] == "feature_and_labels"
                ]
                if versions and max(versions) >= max_version:
                    break
                time.sleep(3)
        print("seed version cluster creator a[0..3]")
        for r in loop.probe_results():
            if r["arm"] == "feature_and_labels":
                push = push_weights(loop.store("feature_and_labels"), int(r["model_version"]))
                print(seed, r["model_version"], f"{r['cluster']:+.3f}", f"{r['creator']:+.3f}",
                      push)  # fmt: skip
    finally:
        broker.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))
