"""Grafana dashboards as code; ``python -m monitoring.dashboards`` writes ``dashboards/*.json``.

Four dashboards: an overview, responsiveness (per model version and arm, with
interval bounds), pipeline health and the learner. Every panel is a list of
PromQL targets over catalogued metrics or the recording rules of
:mod:`monitoring.rules`; ``recoil report`` plots the same panels from
Prometheus' ``query_range`` API, and the live check evaluates every target.

The JSON is provisionable as is: the datasource is the template variable
``${datasource}`` (any Prometheus), panels use ``$__rate_interval``, and the
responsiveness dashboard has a multi-value ``$arm`` variable.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitoring import generated, rules

DASHBOARD_DIR = Path(__file__).with_name("dashboards")
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
ARM = 'arm=~"$arm"'
VERSION_LEGEND = "{{arm}} v{{model_version}}"


@dataclass(frozen=True)
class Target:
    """One PromQL query of a panel."""

    expr: str
    legend: str = ""  # Grafana legendFormat, e.g. "{{arm}} v{{model_version}}"
    band: str = ""  # "lower"/"upper": an interval bound for the line with the same labels


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    targets: tuple[Target, ...]
    unit: str = "short"  # Grafana unit: percentunit, s, ops, short...
    kind: str = "timeseries"  # or "stat" (last value, large)
    width: int = 12  # of 24 grid columns
    height: int = 8


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    arm_variable: bool = False  # adds the multi-value $arm variable

    @property
    def file_name(self) -> str:
        return f"{self.uid}.json"


def _rate(selector: str, by: str = "", window: str = "$__rate_interval") -> str:
    grouping = f"sum by ({by}) " if by else "sum "
    return f"{grouping}(rate({selector}[{window}]))"


def _quantile(q: float, bucket: str, by: str = "", window: str = "$__rate_interval") -> str:
    labels = f"{by}, le" if by else "le"
    return f"histogram_quantile({q}, sum by ({labels}) (rate({bucket}[{window}])))"


def _p50_p99(
    bucket: str, prefix: str = "", window: str = "$__rate_interval"
) -> tuple[Target, Target]:
    """The median and the 99th percentile of a histogram, legends ``{prefix}p50``/``p99``."""
    return (
        Target(_quantile(0.5, bucket, window=window), f"{prefix}p50"),
        Target(_quantile(0.99, bucket, window=window), f"{prefix}p99"),
    )


def _per_second(title: str, description: str, counter: str, by: str) -> Panel:
    """One counter's rate, summed by the labels ``by`` (one line per value)."""
    legend = " ".join(f"{{{{{label.strip()}}}}}" for label in by.split(","))
    return Panel(title, description, (Target(_rate(counter, by), legend),), unit="ops")


def _responsiveness(similarity: str) -> Panel:
    sel = f'{{similarity="{similarity}", {ARM}}}'
    return Panel(
        f"{similarity.capitalize()} responsiveness by model version",
        f"Relative change of the share of same-{similarity} recommendations right after a "
        "dislike (counterfactual probe: long dwell vs long dwell + dislike on the same item). "
        "More negative = more responsive; the paper reports -0.61 (cluster) / -0.64 (creator) "
        "for dislikes as feature and label, about 0 without a dislike signal. Dashed: "
        "bootstrap 95% interval.",
        (
            Target(f"recoil_responsiveness_ratio{sel}", VERSION_LEGEND),
            Target(f"recoil_responsiveness_ci_lower_ratio{sel}", VERSION_LEGEND + " lo", "lower"),
            Target(f"recoil_responsiveness_ci_upper_ratio{sel}", VERSION_LEGEND + " hi", "upper"),
        ),
        unit="percentunit",
    )


def _latest_responsiveness(similarity: str) -> Panel:
    return Panel(
        f"Latest responsiveness ({similarity})",
        "Newest probed model version per arm (recording rule).",
        (Target(f'{rules.LATEST}{{similarity="{similarity}"}}', VERSION_LEGEND),),
        unit="percentunit",
        kind="stat",
        width=8,
        height=5,
    )


def _impression_share() -> str:
    impressions = f"recoil_sim_impressions_total{{{ARM}}}"
    return (
        f"{_rate(impressions, 'arm, response')}\n"
        f"/ ignoring (response) group_left {_rate(impressions, 'arm')}"
    )


OVERVIEW = Dashboard(
    "recoil-overview",
    "recoil / overview",
    "Is the loop learning from dislikes, and is it healthy?",
    (
        _latest_responsiveness("cluster"),
        _latest_responsiveness("creator"),
        Panel(
            "Firing alerts",
            "Recoil alerts firing now (monitoring/rules/alerts.yml).",
            (Target('count(ALERTS{alertstate="firing", alertname=~"Recoil.*"}) or vector(0)'),),
            kind="stat",
            width=8,
            height=5,
        ),
        _per_second(
            "Events per second by outcome",
            "Interaction events the stream workers consumed, by label outcome.",
            "recoil_stream_events_total",
            "outcome",
        ),
        Panel(
            "Simulated dislike rate",
            "Share of simulated impressions disliked, per arm and model version.",
            (Target("recoil_sim_dislike_rate_ratio", VERSION_LEGEND),),
            unit="percentunit",
        ),
        Panel(
            "Snapshot age",
            "Seconds since each learner published its newest snapshot.",
            (Target("time() - recoil_learner_snapshot_timestamp_seconds", "{{instance}}"),),
            unit="s",
        ),
        Panel(
            "Freshness (p99)",
            "Dislike produced until GET /recommend reflects it, and event until the first "
            "snapshot trained on it.",
            (
                Target(_quantile(0.99, "recoil_freshness_feature_seconds_bucket"), "feature"),
                Target(
                    _quantile(0.99, "recoil_freshness_snapshot_seconds_bucket", window="15m"),
                    "snapshot",
                ),
            ),
            unit="s",
        ),
    ),
)

RESPONSIVENESS = Dashboard(
    "recoil-responsiveness",
    "recoil / responsiveness",
    "How much each model version backs away from what a user just disliked (Wang et al., "
    "RecSys '23, section 4), and the simulated users' dislike rates.",
    (
        _responsiveness("cluster"),
        _responsiveness("creator"),
        Panel(
            "Newest vs previous model version",
            "Versions ordered by when the simulator first reported them. One probe is a noisy "
            "measurement: consecutive versions differ without any change of the model.",
            (
                Target(
                    f"{rules.LATEST}{{{ARM}}}",
                    "{{arm}} {{similarity}} newest v{{model_version}}",
                ),
                Target(
                    f"{rules.PREVIOUS}{{{ARM}}}",
                    "{{arm}} {{similarity}} previous v{{model_version}}",
                ),
            ),
            unit="percentunit",
        ),
        Panel(
            "Pooled responsiveness: recent vs baseline versions",
            "What the RecoilResponsivenessRegressed alert compares: the newest version's "
            "responsiveness averaged over the recent window and over the baseline window "
            "before it (monitoring/rules.py Thresholds). It fires when recent is more than "
            "the threshold above baseline.",
            (
                Target(
                    f"{rules.AVG_RECENT}{{{ARM}}}",
                    "{{arm}} {{similarity}} recent",
                ),
                Target(
                    f"{rules.AVG_BASELINE}{{{ARM}}}",
                    "{{arm}} {{similarity}} baseline",
                ),
            ),
            unit="percentunit",
        ),
        Panel(
            "A/B: live rates per arm",
            "Each arm serves only its own users (a stable hash of the user id picks the arm). "
            "Per arm, over the impressions its model served: dislike rate, repeated dislikes "
            "of a creator within the repeat window, engagement (positives per impression). "
            "Band: 95% interval, users resampled.",
            (
                Target(f"recoil_sim_arm_rate_ratio{{{ARM}}}", "{{arm}} {{rate}}"),
                Target(
                    f"recoil_sim_arm_rate_ci_lower_ratio{{{ARM}}}", "{{arm}} {{rate}} lo", "lower"
                ),
                Target(
                    f"recoil_sim_arm_rate_ci_upper_ratio{{{ARM}}}", "{{arm}} {{rate}} hi", "upper"
                ),
            ),
            unit="percentunit",
        ),
        Panel(
            "A/B: change against the baseline arm",
            "rate(arm) / rate(baseline) - 1 for each live rate, with its 95% interval (each "
            "arm's users resampled). The paper's live result for feature + labels against no "
            "dislike signal: dislike rate -2.44%, repeated dislikes of a creator -9.60%.",
            (
                Target(f"recoil_sim_ab_change_ratio{{{ARM}}}", "{{arm}} vs {{baseline}} {{rate}}"),
                Target(
                    f"recoil_sim_ab_change_ci_lower_ratio{{{ARM}}}",
                    "{{arm}} vs {{baseline}} {{rate}} lo",
                    "lower",
                ),
                Target(
                    f"recoil_sim_ab_change_ci_upper_ratio{{{ARM}}}",
                    "{{arm}} vs {{baseline}} {{rate}} hi",
                    "upper",
                ),
            ),
            unit="percentunit",
        ),
        Panel(
            "A/B: change against the baseline arm, CUPED-adjusted",
            "The change above with each arm's rate adjusted by its users' same rate on the "
            "impressions the logging policy chose (the same policy in every arm; CUPED, "
            "simulator/cuped.py). Users differ much in how often they dislike; the "
            "adjustment takes that spread out, so the interval is narrower.",
            (
                Target(
                    f"recoil_sim_ab_change_cuped_ratio{{{ARM}}}",
                    "{{arm}} vs {{baseline}} {{rate}}",
                ),
                Target(
                    f"recoil_sim_ab_change_cuped_ci_lower_ratio{{{ARM}}}",
                    "{{arm}} vs {{baseline}} {{rate}} lo",
                    "lower",
                ),
                Target(
                    f"recoil_sim_ab_change_cuped_ci_upper_ratio{{{ARM}}}",
                    "{{arm}} vs {{baseline}} {{rate}} hi",
                    "upper",
                ),
            ),
            unit="percentunit",
        ),
        Panel(
            "Simulated responses",
            "Share of simulated impressions by user response, per arm.",
            (Target(_impression_share(), "{{arm}} {{response}}"),),
            unit="percentunit",
        ),
        Panel(
            "Dislike rate",
            "Share of simulated impressions disliked (paper, live: -2.44% relative for "
            "feature + labels against no dislike signal).",
            (Target(f"recoil_sim_dislike_rate_ratio{{{ARM}}}", VERSION_LEGEND),),
            unit="percentunit",
        ),
        Panel(
            "Repeated dislikes of the same creator",
            "Share of simulated impressions disliking a creator the user disliked within the "
            "repeat window (paper, live: -9.60% relative).",
            (Target(f"recoil_sim_repeat_dislike_creator_rate_ratio{{{ARM}}}", VERSION_LEGEND),),
            unit="percentunit",
        ),
    ),
    arm_variable=True,
)

PIPELINE = Dashboard(
    "recoil-pipeline",
    "recoil / pipeline health",
    "Throughput, lag, freshness and errors from events to recommendations.",
    (
        _per_second(
            "Events per second by outcome",
            "Labelled by the streams' labelling rules; invalid ones go to the DLQ.",
            "recoil_stream_events_total",
            "outcome",
        ),
        _per_second(
            "Training examples per second",
            "Examples written to training-examples, by label kind.",
            "recoil_stream_training_examples_total",
            "kind",
        ),
        Panel(
            "Invalid events and DLQ",
            "Schema rejections by reason, events written to interactions.dlq, and input "
            "records Faust fetched and never handed over (faust #596), re-read, by how the "
            "loss showed.",
            (
                Target(_rate("recoil_stream_invalid_events_total", "reason"), "{{reason}}"),
                Target(_rate("recoil_stream_dlq_events_total"), "to DLQ"),
                Target(_rate("recoil_stream_lost_records_total", "cause"), "re-read: {{cause}}"),
            ),
            unit="ops",
        ),
        Panel(
            "Consumer lag",
            "Messages behind the log end: stream workers on their input, learner on "
            "training-examples.",
            (
                Target(
                    "sum by (topic, partition) (recoil_stream_consumer_lag_messages)",
                    "stream {{topic}}/{{partition}}",
                ),
                Target(
                    "sum by (partition) (recoil_learner_consumer_lag_messages)",
                    "learner p{{partition}}",
                ),
            ),
        ),
        Panel(
            "Stream processing time",
            "Per event, decode to send.",
            _p50_p99("recoil_stream_processing_seconds_bucket"),
            unit="s",
        ),
        Panel(
            "Freshness",
            "Feature: dislike produced until GET /recommend reflects it. Snapshot: event "
            "produced until the first snapshot trained on it.",
            (
                *_p50_p99("recoil_freshness_feature_seconds_bucket", "feature "),
                *_p50_p99("recoil_freshness_snapshot_seconds_bucket", "snapshot ", window="15m"),
            ),
            unit="s",
        ),
        _per_second(
            "Serving requests",
            "Requests per second by endpoint and HTTP status.",
            "recoil_serving_requests_total",
            "endpoint, status",
        ),
        Panel(
            "Serving latency and errors",
            "p99 latency by endpoint; share of requests answered 5xx (recording rule).",
            (
                Target(
                    _quantile(0.99, "recoil_serving_request_seconds_bucket", "endpoint"),
                    "p99 {{endpoint}}",
                ),
                Target("job:recoil_serving_requests:error_ratio_rate5m", "5xx ratio"),
            ),
            unit="s",
        ),
        Panel(
            "Users in history tables",
            "Users each stream worker keeps a recent history for.",
            (Target("sum by (instance) (recoil_stream_history_users)", "{{instance}}"),),
        ),
        Panel(
            "Scrape targets up",
            "1 when Prometheus reaches the role's /metrics.",
            (Target('up{job=~"recoil.*"}', "{{job}} {{instance}}"),),
        ),
    ),
)

LEARNER = Dashboard(
    "recoil-learner",
    "recoil / learner",
    "The continuous learner: the two terms of Eq. 1, throughput and snapshots.",
    (
        Panel(
            "Loss terms",
            "Positive: -r·log p(y|s) on liked/long-dwell items. Not-to-recommend: "
            "-w·log(1 - p(y|s)) on disliked/skipped items (Eq. 1).",
            (Target("recoil_learner_loss", "{{term}} {{instance}}"),),
        ),
        _per_second(
            "Steps per second", "Optimizer steps.", "recoil_learner_steps_total", "instance"
        ),
        Panel(
            "Examples per second",
            "Training examples consumed: rate of the counter, and the learner's own gauge.",
            (
                Target(_rate("recoil_learner_examples_total", "instance"), "{{instance}} rate"),
                Target("recoil_learner_examples_per_second", "{{instance}} reported"),
            ),
            unit="ops",
        ),
        Panel(
            "Snapshot age and time since last step",
            "Seconds since the newest snapshot was published and since the last step.",
            (
                Target(
                    "time() - recoil_learner_snapshot_timestamp_seconds", "snapshot {{instance}}"
                ),
                Target("time() - recoil_learner_last_step_timestamp_seconds", "step {{instance}}"),
            ),
            unit="s",
        ),
        Panel(
            "Snapshot version",
            "Published by the learner, and served.",
            (
                Target("recoil_learner_snapshot_version", "learner {{instance}}"),
                Target("recoil_serving_snapshot_version", "serving {{instance}}"),
            ),
        ),
        Panel(
            "Snapshot versions refused by serving",
            "Versions each serving process refused in the last 15 minutes because they "
            "failed to load (RecoilServingSnapshotRefused): served stays behind published. "
            "Its log line 'refused snapshot version N (reason)' names each and why.",
            (
                Target(
                    "increase(recoil_serving_snapshots_refused_total[15m])",
                    "refused {{instance}}",
                ),
            ),
        ),
        Panel(
            "Snapshot publish time",
            "Write, verify and atomically rename one snapshot (p50 and p99 over 15 minutes).",
            _p50_p99("recoil_learner_snapshot_publish_seconds_bucket", window="15m"),
            unit="s",
        ),
        Panel(
            "Learner consumer lag",
            "training-examples messages not yet consumed, by partition.",
            (
                Target(
                    "sum by (instance, partition) (recoil_learner_consumer_lag_messages)",
                    "{{instance}} p{{partition}}",
                ),
            ),
        ),
        Panel(
            "Learner partitions held",
            "training-examples partitions each learner holds (0: it trains on nothing and its "
            "lag reads 0), and the group rejoins it forced in the last 15 minutes after "
            "holding fewer than its topic has (--rejoin-after).",
            (
                Target("recoil_learner_assigned_partitions", "held {{instance}}"),
                Target(
                    "increase(recoil_learner_group_rejoins_total[15m])",
                    "rejoins {{instance}}",
                ),
            ),
        ),
    ),
)

DASHBOARDS: tuple[Dashboard, ...] = (OVERVIEW, RESPONSIVENESS, PIPELINE, LEARNER)


def instantiate(expr: str, rate_interval: str = "1m", arm: str = ".*") -> str:
    """An expression as Grafana sends it (template variables substituted)."""
    return expr.replace("$__rate_interval", rate_interval).replace("$arm", arm)


def _variables(dashboard: Dashboard) -> list[dict[str, Any]]:
    variables: list[dict[str, Any]] = [
        {
            "name": "datasource",
            "label": "Prometheus",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "refresh": 1,
            "regex": "",
            "options": [],
        }
    ]
    if dashboard.arm_variable:
        query = "label_values(recoil_responsiveness_ratio, arm)"
        variables.append(
            {
                "name": "arm",
                "label": "Arm",
                "type": "query",
                "datasource": DATASOURCE,
                "definition": query,
                "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
                "refresh": 2,  # on time range change: new arms appear without a reload
                "multi": True,
                "includeAll": True,
                "allValue": ".*",
                "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                "options": [],
                "sort": 1,
                "hide": 0,
                "regex": "",
            }
        )
    return variables


def _ref(index: int) -> str:
    return chr(ord("A") + index)


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    targets = [
        {
            "refId": _ref(i),
            "datasource": DATASOURCE,
            "editorMode": "code",
            "expr": target.expr,
            "legendFormat": target.legend or "__auto",
            "range": True,
        }
        for i, target in enumerate(panel.targets)
    ]
    # Interval bounds: thin dashed lines around their estimate.
    overrides = [
        {
            "matcher": {"id": "byFrameRefID", "options": _ref(i)},
            "properties": [
                {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [6, 4]}},
                {"id": "custom.lineWidth", "value": 1},
            ],
        }
        for i, target in enumerate(panel.targets)
        if target.band
    ]
    result: dict[str, Any] = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "targets": targets,
    }
    if panel.kind == "stat":
        result["fieldConfig"] = {"defaults": {"unit": panel.unit, "decimals": 2}, "overrides": []}
        result["options"] = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "textMode": "auto",
            "orientation": "auto",
            "justifyMode": "auto",
        }
    else:
        result["fieldConfig"] = {
            "defaults": {
                "unit": panel.unit,
                "custom": {"lineWidth": 2, "fillOpacity": 0, "showPoints": "never"},
            },
            "overrides": overrides,
        }
        result["options"] = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "none"},
        }
    return result


def to_json(dashboard: Dashboard) -> dict[str, Any]:
    """The Grafana dashboard model (schemaVersion 39, Grafana 10/11)."""
    panels: list[dict[str, Any]] = []
    x = y = row_height = 0
    for panel_id, panel in enumerate(dashboard.panels, start=1):
        if x + panel.width > 24:  # next row of the 24-column grid
            x, y, row_height = 0, y + row_height, 0
        panels.append(_panel_json(panel, panel_id, x, y))
        x, row_height = x + panel.width, max(row_height, panel.height)
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": ["recoil"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,  # shared crosshair
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "schemaVersion": 39,
        "version": 1,
        "annotations": {"list": []},
        "links": [
            {"type": "dashboards", "tags": ["recoil"], "asDropdown": True, "title": "recoil"}
        ],
        "templating": {"list": _variables(dashboard)},
        "panels": panels,
    }


def render(dashboard: Dashboard) -> str:
    return json.dumps(to_json(dashboard), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    return generated.write({DASHBOARD_DIR / d.file_name: render(d) for d in DASHBOARDS})


if __name__ == "__main__":
    sys.exit(main())
