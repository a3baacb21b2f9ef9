"""The whole loop on the real broker, tiny world: the continuous-loop issue's acceptance test.

Worker, a learner and a serving process per arm, simulated users — started by
the same ``recoil.loop.Loop`` that ``recoil demo`` runs. While it runs, a
client keeps asking the feature_and_labels serving for recommendations, so hot
swaps happen under traffic.
"""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from recoil.core.kafka_settings import KafkaSettings
from recoil.core.processes import ProcessGroup
from recoil.loop import Loop, LoopConfig

pytestmark = pytest.mark.integration

ARMS = ("feature_and_labels", "no_signal")
DEADLINE_SECONDS = 420
PROBES_PER_ARM = 3  # the responsiveness claim is judged on their mean, not one noisy probe
# Probes of the first snapshots (30 s and 60 s of training) are not counted: on an idle
# machine the three probes otherwise land on versions 1-3, and a 30-second-old model's
# creator responsiveness is noise (+9%, -7%, +5% in one fresh-clone run), while the
# claim is about a model minutes old. A loaded machine reaches later versions anyway.
FIRST_JUDGED_VERSION = 3
OTHER_CLUSTER_ENV = {
    "RECOIL_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "RECOIL_KAFKA_SASL_MECHANISM": "PLAIN",
    "RECOIL_KAFKA_SASL_USERNAME": "someone",
    "RECOIL_KAFKA_SASL_PASSWORD": "elsewhere",
}


def _post(url: str, body: object) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _judged(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The probes of versions old enough to be judged (see FIRST_JUDGED_VERSION)."""
    return [r for r in results if int(r["model_version"]) >= FIRST_JUDGED_VERSION]


@dataclass
class LoopRun:
    per_arm: dict[str, list[dict[str, Any]]]
    examples: dict[str, float | None]
    published: dict[str, list[str]]
    statuses: list[int]
    versions: list[int]
    context: str


@pytest.fixture(scope="module")
def loop_run(kafka_broker: Any, tmp_path_factory: pytest.TempPathFactory) -> LoopRun:
    """Run the loop once for this module until every arm has been probed PROBES_PER_ARM times."""
    kafka = KafkaSettings(kafka_broker.bootstrap_servers)
    tmp_path = tmp_path_factory.mktemp("loop")
    config = LoopConfig(
        workdir=tmp_path, arms=ARMS, topic_suffix=f".loop-{uuid.uuid4().hex[:8]}", rate=200.0,
        # A probe is thrown away when a new snapshot lands during it; with both arms
        # serving their users (A/B) a probe outlasts 12 s on 2 cores, so snapshots come
        # every 30 s (the step trigger is set out of reach).
        snapshot_every_seconds=30.0, snapshot_every_steps=100_000, probe_simulations=150,
    )  # fmt: skip
    statuses: list[int] = []
    versions: list[int] = []
    stop = threading.Event()
    with ProcessGroup(tmp_path / "logs") as group:
        loop = Loop(config, kafka, group)
        with pytest.MonkeyPatch.context() as shell:
            # A shell that exports another cluster's settings, as a user's may: the
            # children must use the loop's own PLAINTEXT broker, as `recoil demo`'s do.
            for name, value in OTHER_CLUSTER_ENV.items():
                shell.setenv(name, value)
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
                results = _judged(loop.probe_results())
                if all(sum(r["arm"] == arm for r in results) >= PROBES_PER_ARM for arm in ARMS):
                    break
                time.sleep(3)
            examples = {
                arm: loop.learner_metric(arm, "recoil_learner_examples_total") for arm in ARMS
            }
        finally:
            stop.set()
            thread.join(10)
            logs = {c.name: c.log_tail(15) for c in group.children}
    results = _judged(loop.probe_results())
    per_arm = {arm: [r for r in results if r["arm"] == arm] for arm in ARMS}
    published = {
        arm: sorted(p.name for p in loop.store(arm).iterdir() if p.name.startswith("v"))
        for arm in ARMS
    }
    context = f"probe results: {per_arm}\nlogs: {logs}"
    return LoopRun(per_arm, examples, published, statuses, versions, context)


def test_loop_trains_publishes_and_swaps_without_failed_requests(loop_run: LoopRun) -> None:
    for arm in ARMS:
        assert (loop_run.examples[arm] or 0) > 0, f"{arm} consumed nothing\n{loop_run.context}"
        assert len(loop_run.published[arm]) >= 2, f"{arm}: {loop_run.published[arm]}"
        probed = len(loop_run.per_arm[arm])
        assert probed >= PROBES_PER_ARM, f"{arm} probed too rarely\n{loop_run.context}"
    # Serving switched versions under traffic and never failed a request.
    assert loop_run.statuses and set(loop_run.statuses) == {200}, set(loop_run.statuses)
    assert len(set(loop_run.versions)) >= 2, "serving never switched versions"
    assert loop_run.versions == sorted(loop_run.versions), "a request went back in version"
    # no_signal cannot see a dislike: its two branches are identical inputs.
    assert all(r["creator"] == 0.0 for r in loop_run.per_arm["no_signal"])


def test_feature_and_labels_is_more_responsive_than_no_signal(loop_run: LoopRun) -> None:
    """The paper's effect on the live loop: after a dislike, the feature_and_labels model
    shows fewer of the creator's items; no_signal cannot (it is exactly 0). One probe of
    150 simulations on a minutes-old model is noisy (demo, 15 versions: -3% to -19%),
    so the mean over the first PROBES_PER_ARM versions is compared."""

    def mean_creator(arm: str) -> float:
        probes = loop_run.per_arm[arm][:PROBES_PER_ARM]
        return sum(float(r["creator"]) for r in probes) / len(probes)

    assert mean_creator("feature_and_labels") < mean_creator("no_signal"), loop_run.context


def test_each_probe_reports_the_ratio_of_its_shares(loop_run: LoopRun) -> None:
    """What the maths fixes exactly, probe by probe: responsiveness is the ratio of the
    two branches' mean shares minus 1, and no_signal's branches are the same input, so
    its shares are equal and every bootstrap resample's change is exactly 0."""
    for arm in ARMS:
        assert len(loop_run.per_arm[arm]) >= PROBES_PER_ARM, f"{arm}: too few probes to check"
        for r in loop_run.per_arm[arm]:
            for kind in ("cluster", "creator"):
                base, disliked = r[f"share_{kind}_long_dwell"], r[f"share_{kind}_dislike"]
                if base == 0:  # relative_change is undefined then, and says so
                    assert math.isnan(r[kind]), r
                else:
                    assert r[kind] == pytest.approx(disliked / base - 1.0, rel=1e-9, abs=1e-12)
    for r in loop_run.per_arm["no_signal"]:
        assert r["share_creator_dislike"] == r["share_creator_long_dwell"]
        assert r["share_cluster_dislike"] == r["share_cluster_long_dwell"]
        assert r["cluster"] == r["creator"] == 0.0
        assert list(r["ci95_cluster"]) == list(r["ci95_creator"]) == [0.0, 0.0]
