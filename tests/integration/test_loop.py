"""The whole loop on the real broker, tiny world: the continuous-loop issue's acceptance test.

Worker, a learner and a serving process per arm, simulated users — started by
the same ``recoil.loop.Loop`` that ``recoil demo`` runs. While it runs, a
client keeps asking the feature_and_labels serving for recommendations, so hot
swaps happen under traffic.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from recoil.kafka_settings import KafkaSettings
from recoil.loop import Loop, LoopConfig
from recoil.processes import ProcessGroup

pytestmark = pytest.mark.integration

ARMS = ("feature_and_labels", "no_signal")
DEADLINE_SECONDS = 420


def _post(url: str, body: object) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_loop_learns_publishes_swaps_and_responds_to_dislikes(
    kafka: KafkaSettings, topic_name: Callable[[str], str], tmp_path: Path
) -> None:
    suffix = topic_name("")  # unique per test run
    config = LoopConfig(
        workdir=tmp_path, arms=ARMS, topic_suffix=suffix, rate=200.0,
        snapshot_every_seconds=12.0, snapshot_every_steps=150, probe_simulations=150,
    )  # fmt: skip
    statuses: list[int] = []
    versions: list[int] = []
    stop = threading.Event()
    with ProcessGroup(tmp_path / "logs") as group:
        loop = Loop(config, kafka, group)
        loop.start()
        url = loop.serving_url(ARMS[0])

        def client() -> None:  # a steady client of the first arm's serving
            ready = False
            while not stop.is_set():
                try:
                    status, body = _post(f"{url}/recommend", {"history": [], "k": 5})
                except OSError:
                    status, body = -1, {}
                if status == 200:
                    ready = True
                    versions.append(int(body["model_version"]))  # type: ignore[call-overload]
                if ready:
                    statuses.append(status)
                time.sleep(0.05)

        thread = threading.Thread(target=client, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + DEADLINE_SECONDS
            while time.monotonic() < deadline:
                group.check()
                results = loop.probe_results()
                per_arm = {arm: [r for r in results if r["arm"] == arm] for arm in ARMS}
                if all(len(r) >= 3 for r in per_arm.values()):
                    break
                time.sleep(3)
            examples = {
                arm: loop.learner_metric(arm, "recoil_learner_examples_total") for arm in ARMS
            }
        finally:
            stop.set()
            thread.join(10)
            logs = {c.name: c.log_tail(15) for c in group.children}
    results = loop.probe_results()
    per_arm = {arm: [r for r in results if r["arm"] == arm] for arm in ARMS}
    context = f"probe results: {per_arm}\nlogs: {logs}"

    for arm in ARMS:
        assert (examples[arm] or 0) > 0, f"{arm} consumed no training examples\n{context}"
        published = sorted(p.name for p in loop.store(arm).iterdir() if p.name.startswith("v"))
        assert len(published) >= 2, f"{arm} published {published}\n{context}"
        assert len(per_arm[arm]) >= 3, f"{arm} was probed {len(per_arm[arm])} times\n{context}"

    # Serving switched versions under traffic and never failed a request.
    assert statuses and set(statuses) == {200}, f"failed requests: {set(statuses)}"
    assert len(set(versions)) >= 2, "serving never switched versions"
    assert versions == sorted(versions), "a request saw an older snapshot after a newer one"

    # The paper's effect, on the latest probes: learning from dislikes makes the model back
    # away from a disliked creator more than a model that never sees dislikes.
    def latest(arm: str, similarity: str) -> float:
        return float(per_arm[arm][-1][similarity])

    assert latest("feature_and_labels", "creator") < latest("no_signal", "creator"), context
