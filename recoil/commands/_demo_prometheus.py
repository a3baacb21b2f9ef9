"""``recoil demo --prometheus``: a real Prometheus with monitoring/'s rules beside the loop.

The demo starts Debian's ``prometheus`` (a child like the roles) with the committed
config and rule files (``monitoring.scrape.scrape_config_for``), scraping every role
of the loop at the committed 15 s. While the demo runs it polls the server's
``/api/v1/alerts`` and prints each alert's changes of state (pending, firing,
resolved) with the run's elapsed time, and appends every poll, with the regression
alert's pooled series, to ``<workdir>/prometheus.jsonl``. The server's TSDB stays in
``<workdir>/prometheus`` for a look afterwards (start ``prometheus`` on it).

This is how a run checks ``RecoilResponsivenessRegressed`` live, e.g. with
``--switch feature_and_labels=no_signal@300`` (docs/live_experiment.md).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitoring.prometheus_api import api, is_ready
from recoil.broker.embedded import free_port
from recoil.core.errors import ConfigError
from recoil.core.processes import ProcessGroup

# The regression alert's inputs, logged at every poll.
POOLED_SERIES = (
    "arm_similarity:recoil_responsiveness_ratio:newest",
    "arm_similarity:recoil_responsiveness_ratio:avg_recent",
    "arm_similarity:recoil_responsiveness_ratio:avg_baseline",
)

AlertKey = tuple[str, tuple[tuple[str, str], ...]]  # alertname, sorted labels (no severity)


def alert_key(alert: Mapping[str, Any]) -> AlertKey:
    labels = dict(alert["labels"])
    name = str(labels.pop("alertname"))
    labels.pop("severity", None)
    return name, tuple(sorted((str(k), str(v)) for k, v in labels.items()))


def alert_changes(
    before: Mapping[AlertKey, str], alerts: Sequence[Mapping[str, Any]]
) -> tuple[dict[AlertKey, str], list[tuple[AlertKey, str, str]]]:
    """The alerts' states now (pending or firing; resolved ones are absent) and each
    change from ``before``: (alert, old state, new state), ``"inactive"`` when absent."""
    now = {alert_key(a): str(a["state"]) for a in alerts}
    changes = [(k, before.get(k, "inactive"), s) for k, s in now.items() if before.get(k) != s]
    changes += [(k, s, "inactive") for k, s in before.items() if k not in now]
    return now, sorted(changes)


def describe(key: AlertKey) -> str:
    name, labels = key
    return name + (" " + " ".join(f"{k}={v}" for k, v in labels) if labels else "")


@dataclass(frozen=True)
class Episode:
    """An alert's time in one state, in seconds of the run; ``end`` None while it lasts."""

    key: AlertKey
    state: str
    start: float
    end: float | None


def episodes(changes: Sequence[tuple[float, AlertKey, str, str]]) -> list[Episode]:
    """Pending and firing episodes from timed changes (as ``alert_changes`` reports)."""
    open_: dict[AlertKey, tuple[str, float]] = {}
    out: list[Episode] = []
    for elapsed, key, _old, new in changes:
        if key in open_:
            state, start = open_.pop(key)
            out.append(Episode(key, state, start, elapsed))
        if new != "inactive":
            open_[key] = (new, elapsed)
    out += [Episode(k, s, t, None) for k, (s, t) in open_.items()]
    return sorted(out, key=lambda e: (e.start, e.key))


class DemoPrometheus:
    """Prometheus on loopback with the committed config and rules, run as a demo child."""

    def __init__(self, workdir: Path, targets: Mapping[str, Sequence[str]]) -> None:
        from monitoring.scrape import RULE_FILES, scrape_config_for

        binary = shutil.which("prometheus")
        if binary is None:
            raise ConfigError("--prometheus needs Debian's prometheus (scripts/setup.sh)")
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_file = workdir / "prometheus.yml"
        # The committed scrape and evaluation interval, so the rules see what production does.
        config = scrape_config_for(
            targets, interval="15s", rule_files=[p.resolve() for p in RULE_FILES]
        )
        self.config_file.write_text(config)
        self.state: dict[AlertKey, str] = {}
        self.changes: list[tuple[float, AlertKey, str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, group: ProcessGroup, timeout: float = 60.0) -> None:
        child = group.start(
            "prometheus",
            [
                self.binary,
                f"--config.file={self.config_file}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not child.running:
                raise RuntimeError(f"prometheus exited:\n{child.log_tail()}")
            if is_ready(self.url):
                return
            time.sleep(0.5)
        raise RuntimeError(f"prometheus not ready after {timeout}s:\n{child.log_tail()}")

    def api(self, path: str, **params: str) -> Any:
        return api(self.url, path, **params)

    def poll(self, elapsed: float, log: Path) -> list[str]:
        """Read the alerts and the pooled series once; log them; one line per change."""
        alerts = self.api("alerts")["alerts"]
        at = str(time.time())  # one instant for the three series, so they read alike
        series = {
            expr.rsplit(":", 1)[-1]: {
                f"{r['metric'].get('arm')}/{r['metric'].get('similarity')}": float(r["value"][1])
                for r in self.api("query", query=expr, time=at)["result"]
            }
            for expr in POOLED_SERIES
        }
        with log.open("a") as out:
            out.write(json.dumps({"elapsed": round(elapsed, 1), "time": time.time(),
                                  "alerts": alerts, "series": series}) + "\n")  # fmt: skip
        self.state, changes = alert_changes(self.state, alerts)
        self.changes += [(elapsed, k, old, new) for k, old, new in changes]
        return [f"[{elapsed:5.0f}s] alert {describe(k)}: {old} -> {new}" for k, old, new in changes]

    def summary(self) -> str:
        """Every pending and firing episode of the run, or that no alert became active."""
        found = episodes(self.changes)
        if not found:
            return "Prometheus alerts: none pending or firing during the run."
        lines = ["Prometheus alerts (seconds since the demo started):"]
        for e in found:
            end = "the end" if e.end is None else f"{e.end:.0f}s"
            lines.append(f"  {describe(e.key)}: {e.state} from {e.start:.0f}s to {end}")
        return "\n".join(lines)
