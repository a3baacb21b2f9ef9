"""The metric catalogue: every metric recoil's processes export, as data.

This is the contract between the parts (streams worker, learner, serving,
simulator) and everything that reads their metrics: the recording and alert
rules (:mod:`monitoring.rules`), the Grafana dashboards
(:mod:`monitoring.dashboards`), ``recoil report`` and ``catalogue.md``
(``python -m monitoring.catalogue`` regenerates it). Names follow Prometheus'
conventions: a ``recoil_`` prefix, base units as suffixes (``_seconds``,
``_ratio``, ``_messages``), ``_total`` on counters only.

Each part's metrics class creates its metrics from here, on the registry it is
given (``create_part``), so names, types, help texts, labels and buckets are
stated once; a unit test checks that every part's class (``PART_CLASSES``)
registers exactly its catalogued metrics, and that no other code of the parts
creates a metric.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal, TypeVar, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from monitoring import generated
from recoil.core.events import INVALID_CODES
from recoil.core.records import LABEL_KINDS


class MetricType(StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


class Part(StrEnum):
    """The processes that export metrics; each is one Prometheus scrape job."""

    STREAMS = "streams"
    LEARNER = "learner"
    SERVING = "serving"
    SIMULATOR = "simulator"


@dataclass(frozen=True)
class Label:
    """A label name with its known values (empty when the set is open)."""

    name: str
    values: tuple[str, ...] = ()  # every value the label takes, when the set is closed
    doc: str = ""  # what the value means when the set is open


@dataclass(frozen=True)
class Metric:
    """One catalogued metric family."""

    name: str  # the exposed name; counters include `_total`
    type: MetricType
    part: Part
    help: str
    unit: str = ""  # base unit the name ends with ("" for plain counts and versions)
    labels: tuple[Label, ...] = ()
    buckets: tuple[float, ...] = ()  # a histogram's buckets (seconds), as the part exports them

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(label.name for label in self.labels)

    @property
    def family(self) -> str:
        """The family name prometheus-client reports (counters drop `_total`)."""
        return self.name.removesuffix("_total") if self.type is MetricType.COUNTER else self.name

    def selector(self, **matchers: str) -> str:
        """A PromQL selector for this metric's main series (the `_bucket`s for histograms)."""
        name = f"{self.name}_bucket" if self.type is MetricType.HISTOGRAM else self.name
        if not matchers:
            return name
        inner = ",".join(f'{key}=~"{value}"' for key, value in matchers.items())
        return f"{name}{{{inner}}}"


# Label values. Codes that travel on a topic belong to the contract (recoil/core) and
# are imported; the rest exist only as metric labels, so this catalogue owns them and
# the parts import them from here.
Outcome = Literal["positive", "dislike", "skip", "none", "invalid", "duplicate", "out_of_order"]
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)  # what a stream worker did with an event
SkipReason = Literal["oversized", "undecodable", "invalid"]
SKIP_REASONS: tuple[SkipReason, ...] = get_args(SkipReason)  # learner/example_check.py
LossTerm = Literal["positive", "not_to_recommend", "total"]
LOSS_TERMS: tuple[LossTerm, ...] = get_args(LossTerm)  # the terms of Eq. 1
SnapshotStage = Literal["checkpoint", "publish", "announce"]
SNAPSHOT_STAGES: tuple[SnapshotStage, ...] = get_args(SnapshotStage)  # where a publish fails
# How a record Faust fetched and never handed over showed (streams/continuity.py): a later
# record of its partition jumped over it, it sat on the broker with nothing after it
# (the stall watch), or it held a commit back (streams/consumer.py, at-least-once).
LostCause = Literal["jump", "stall", "hole"]
LOST_CAUSES: tuple[LostCause, ...] = get_args(LostCause)
SIMILARITIES = ("cluster", "creator")
RESPONSES = ("like", "long_dwell", "short_dwell", "skip", "dislike")
LIVE_RATES = ("dislike", "repeat_dislike", "engagement")  # simulator/ab.py, in display order
ARM_DOC = "model arm (learner/arms.py), e.g. feature_and_labels, no_signal"
VERSION_DOC = "snapshot version of the probed model, as a decimal string"

_ARM = Label("arm", doc=ARM_DOC)
_VERSION = Label("model_version", doc=VERSION_DOC)
_SIMILARITY = Label("similarity", SIMILARITIES)
_RATE = Label("rate", LIVE_RATES)
_BASELINE = Label("baseline", doc="the A/B baseline arm (the last arm), e.g. no_signal")
_PARTITION = Label("partition", doc="Kafka partition number")
# Per-event latency (decode -> sends queued) is tens of microseconds to a few
# milliseconds; the upper buckets catch stalls (GC, a slow broker, a rebalance).
_PROCESSING_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)  # fmt: skip
_REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_ENDPOINT = Label("endpoint", doc="route, e.g. /recommend/{user_id}")

C, G, H = MetricType.COUNTER, MetricType.GAUGE, MetricType.HISTOGRAM
S, LRN, SRV, SIM = Part.STREAMS, Part.LEARNER, Part.SERVING, Part.SIMULATOR


def _with_interval(
    stem: str, help: str, interval: str, labels: tuple[Label, ...]
) -> tuple[Metric, Metric, Metric]:
    """A simulator ratio and the lower and upper bounds of its 95% ``interval``."""
    return (
        Metric(f"{stem}_ratio", G, SIM, help, unit="ratio", labels=labels),
        Metric(f"{stem}_ci_lower_ratio", G, SIM, f"Lower bound of the {interval}.",
               unit="ratio", labels=labels),
        Metric(f"{stem}_ci_upper_ratio", G, SIM, f"Upper bound of the {interval}.",
               unit="ratio", labels=labels),
    )  # fmt: skip


CATALOGUE: tuple[Metric, ...] = (
    # streams worker: streams/metrics.py, StreamMetrics(registry)
    Metric("recoil_stream_events_total", C, S,
           "Interaction events read from the input topic, by outcome",
           labels=(Label("outcome", OUTCOMES),)),
    Metric("recoil_stream_invalid_events_total", C, S,
           "Invalid interaction events, by Invalid.code",
           labels=(Label("reason", INVALID_CODES, doc="Invalid.code from recoil/core/events.py"),)),
    Metric("recoil_stream_dlq_events_total", C, S, "Events written to the dead-letter topic"),
    Metric("recoil_stream_training_examples_total", C, S,
           "Training examples written, by label kind", labels=(Label("kind", LABEL_KINDS),)),
    Metric("recoil_stream_processing_seconds", H, S, "Per-event processing time, decode to send",
           unit="seconds", buckets=_PROCESSING_BUCKETS),
    Metric("recoil_stream_history_users", G, S,
           "Users in this worker's history table (its assigned partitions)"),
    Metric("recoil_stream_consumer_lag_messages", G, S,
           "Messages between the last processed offset and the end of the partition",
           unit="messages", labels=(Label("topic", doc="input topic"), _PARTITION)),
    Metric("recoil_stream_worker_restarts_total", C, S,
           "Restarts of the Faust worker process by its supervisor (recoil worker)"),
    Metric("recoil_stream_same_offset_restarts_total", C, S,
           "Restarts that came back to the input record the worker had died at"),
    Metric("recoil_stream_skipped_records_total", C, S,
           "Input records skipped without a dead letter: even the minimal one failed"),
    Metric("recoil_stream_lost_records_total", C, S,
           "Input records fetched and never handed to the agent (faust #596), re-read from "
           "the broker; by how the loss showed",
           labels=(Label("cause", LOST_CAUSES),)),
    Metric("recoil_stream_reread_batches_total", C, S,
           "Fetched batches aiokafka could not parse (a header key that is not UTF-8), "
           "read again with the key's bytes replaced"),
    # learner: learner/metrics.py, LearnerMetrics(registry)
    Metric("recoil_learner_steps_total", C, LRN, "Optimizer steps taken."),
    Metric("recoil_learner_examples_total", C, LRN, "Training examples consumed."),
    Metric("recoil_learner_examples_per_second", G, LRN,
           "Training throughput over the last interval (rate() of examples_total is preferred)."),
    Metric("recoil_learner_loss", G, LRN, "Mean loss of the last step, by term of Eq. 1.",
           labels=(Label("term", LOSS_TERMS),)),
    Metric("recoil_learner_snapshot_version", G, LRN, "Version of the last published snapshot."),
    Metric("recoil_learner_snapshot_timestamp_seconds", G, LRN,
           "Unix time of the last snapshot publish.", unit="seconds"),
    Metric("recoil_learner_snapshot_publish_seconds", H, LRN,
           "Time to write, verify and publish one snapshot.", unit="seconds",
           buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)),
    Metric("recoil_learner_consumer_lag_messages", G, LRN,
           "training-examples messages not yet consumed by the learner.", unit="messages",
           labels=(_PARTITION,)),
    Metric("recoil_learner_assigned_partitions", G, LRN,
           "training-examples partitions the learner holds (0: it trains on nothing and its "
           "lag reads 0)."),
    Metric("recoil_learner_group_rejoins_total", C, LRN,
           "Consumer group rejoins the learner forced after holding fewer partitions than "
           "its topic has for --rejoin-after seconds."),
    Metric("recoil_learner_last_step_timestamp_seconds", G, LRN,
           "Unix time of the last optimizer step.", unit="seconds"),
    Metric("recoil_learner_skipped_examples_total", C, LRN,
           "training-examples records skipped as oversized, undecodable or invalid.",
           labels=(Label("reason", SKIP_REASONS),)),
    Metric("recoil_learner_snapshot_failures_total", C, LRN,
           "Snapshot publishes that failed (training went on), by the stage that failed.",
           labels=(Label("stage", SNAPSHOT_STAGES),)),
    # serving: serving/metrics.py, ServingMetrics(registry)
    Metric("recoil_serving_requests_total", C, SRV,
           "Recommend API requests by endpoint and HTTP status.",
           labels=(_ENDPOINT, Label("status", doc="HTTP status code as a string"))),
    Metric("recoil_serving_request_seconds", H, SRV, "Recommend API request latency.",
           unit="seconds", labels=(_ENDPOINT,), buckets=_REQUEST_BUCKETS),
    Metric("recoil_serving_snapshot_version", G, SRV,
           "Version of the model snapshot being served."),
    Metric("recoil_serving_snapshots_refused_total", C, SRV,
           "Snapshot versions refused because they failed to load (each once; the serving "
           "log names the version and why)."),
    # simulator / probes: simulator/exporter.py, SimulatorMetrics(registry)
    *_with_interval("recoil_responsiveness",
                    "Relative change of same-cluster/creator share after a dislike (e.g. -0.6).",
                    "bootstrap 95% interval of responsiveness", (_SIMILARITY, _VERSION, _ARM)),
    Metric("recoil_sim_impressions_total", C, SIM, "Simulated impressions, by user response.",
           labels=(_ARM, Label("response", RESPONSES))),
    Metric("recoil_sim_dislike_rate_ratio", G, SIM, "Share of simulated impressions disliked.",
           unit="ratio", labels=(_ARM, _VERSION)),
    Metric("recoil_sim_repeat_dislike_creator_rate_ratio", G, SIM,
           "Share of simulated impressions disliking a creator the user disliked within the "
           "last --repeat-window impressions.", unit="ratio", labels=(_ARM, _VERSION)),
    # A/B: each arm serves its own users (simulator/ab.py); intervals resample users.
    *_with_interval("recoil_sim_arm_rate",
                    "Live rate over the impressions each arm served its users: dislike, "
                    "repeat_dislike (same creator within --repeat-window impressions) or "
                    "engagement (positives).",
                    "95% interval of the arm's live rate (users resampled)", (_ARM, _RATE)),
    *_with_interval("recoil_sim_ab_change",
                    "A/B: relative change of the arm's live rate against the baseline arm's "
                    "(e.g. -0.0244 for the paper's dislike rate).",
                    "95% interval of the A/B change", (_ARM, _BASELINE, _RATE)),
    *_with_interval("recoil_sim_ab_change_cuped",
                    "A/B: the change of recoil_sim_ab_change_ratio, CUPED-adjusted by each "
                    "user's same rate on the impressions the logging policy chose "
                    "(simulator/cuped.py).",
                    "95% interval of the CUPED-adjusted A/B change", (_ARM, _BASELINE, _RATE)),
    Metric("recoil_freshness_feature_seconds", H, SIM,
           "Dislike event produced until GET /recommend reflects it.", unit="seconds",
           buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)),
    Metric("recoil_freshness_snapshot_seconds", H, SIM,
           "Event produced until the first snapshot trained on it is published.",
           unit="seconds", buckets=(1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0)),
)  # fmt: skip

BY_NAME: dict[str, Metric] = {metric.name: metric for metric in CATALOGUE}

# Each part's metrics class, (module, class): the catalogue test registers each and
# compares, and catalogue.md names them.
PART_CLASSES: dict[Part, tuple[str, str]] = {
    Part.STREAMS: ("streams.metrics", "StreamMetrics"),
    Part.LEARNER: ("learner.metrics", "LearnerMetrics"),
    Part.SERVING: ("serving.metrics", "ServingMetrics"),
    Part.SIMULATOR: ("simulator.exporter", "SimulatorMetrics"),
}


def metric(name: str) -> Metric:
    """The catalogued metric called ``name``; KeyError names the catalogue if it is unknown."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"{name!r} is not in monitoring/catalogue.py") from None


def of_part(part: Part) -> tuple[Metric, ...]:
    return tuple(m for m in CATALOGUE if m.part is part)


def create(metric: Metric, registry: CollectorRegistry) -> MetricWrapperBase:
    """Create one catalogued metric in ``registry`` (with its suggested buckets)."""
    if metric.type is MetricType.COUNTER:
        return Counter(metric.name, metric.help, metric.label_names, registry=registry)
    if metric.type is MetricType.GAUGE:
        return Gauge(metric.name, metric.help, metric.label_names, registry=registry)
    return Histogram(
        metric.name, metric.help, metric.label_names, registry=registry, buckets=metric.buckets
    )


def create_all(
    registry: CollectorRegistry, metrics: tuple[Metric, ...] = CATALOGUE
) -> dict[str, MetricWrapperBase]:
    """Every catalogued metric in ``registry``, by name (for exporters of sample data)."""
    return {m.name: create(m, registry) for m in metrics}


W = TypeVar("W", bound=MetricWrapperBase)


@dataclass(frozen=True)
class PartMetrics:
    """One part's catalogued metrics in one registry, handed out by name and type."""

    part: Part
    by_name: dict[str, MetricWrapperBase]

    def get(self, name: str, kind: type[W]) -> W:
        found = self.by_name.get(name)
        if found is None:
            raise KeyError(f"{name!r} is not a {self.part} metric in monitoring/catalogue.py")
        if not isinstance(found, kind):
            raise TypeError(f"{name} is catalogued as a {metric(name).type}, not a {kind}")
        return found

    def counter(self, name: str) -> Counter:
        return self.get(name, Counter)

    def gauge(self, name: str) -> Gauge:
        return self.get(name, Gauge)

    def histogram(self, name: str) -> Histogram:
        return self.get(name, Histogram)


def create_part(part: Part, registry: CollectorRegistry) -> PartMetrics:
    """Every metric of ``part`` in ``registry``.

    A counter whose labels all have closed value sets starts each of its series at 0,
    so ``rate()`` and ``absent()`` behave before the first event of a kind.
    """
    created = create_all(registry, of_part(part))
    for m in of_part(part):
        if m.type is MetricType.COUNTER and m.labels and all(lb.values for lb in m.labels):
            for labels in iter_label_sets(m):
                created[m.name].labels(**labels)
    return PartMetrics(part, created)


def _label_cell(label: Label) -> str:
    if label.values:
        return f"`{label.name}`: " + "\\|".join(label.values)
    return f"`{label.name}`: {label.doc}"


def markdown_table() -> str:
    """``catalogue.md``: one table per part."""
    lines = [
        "# recoil metric catalogue",
        "",
        "Generated from `monitoring/catalogue.py` by `python -m monitoring.catalogue`; "
        "do not edit by hand.",
    ]
    for part in Part:
        module, cls = PART_CLASSES[part]
        lines += ["", f"## {part.value} (`{module}.{cls}`)", ""]
        lines += ["| name | type | unit | labels | help |", "|---|---|---|---|---|"]
        for m in of_part(part):
            labels = "<br>".join(_label_cell(label) for label in m.labels) or "—"
            lines.append(f"| `{m.name}` | {m.type} | {m.unit or '—'} | {labels} | {m.help} |")
    return "\n".join(lines) + "\n"


MARKDOWN_PATH = Path(__file__).with_name("catalogue.md")


def iter_label_sets(metric: Metric) -> Iterator[dict[str, str]]:
    """Every combination of the closed label sets (open labels omitted)."""
    combos: list[dict[str, str]] = [{}]
    for label in metric.labels:
        if label.values:
            combos = [c | {label.name: v} for c in combos for v in label.values]
    yield from combos


def main() -> int:
    return generated.write({MARKDOWN_PATH: markdown_table()})


if __name__ == "__main__":
    sys.exit(main())
