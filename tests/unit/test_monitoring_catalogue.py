"""The metric catalogue: Prometheus naming conventions, the generated table, and the parts.

Each part's metrics class (streams, learner, serving, simulator; ``PART_CLASSES``)
must register exactly its catalogued names, types, help texts, labels and buckets,
and no other code of the parts may create a metric.
"""

from __future__ import annotations

import importlib
import re
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from monitoring import catalogue
from monitoring.catalogue import CATALOGUE, PART_CLASSES, MetricType, Part
from recoil.core.events import INVALID_CODES
from recoil.core.records import LABEL_KINDS

REPO = Path(__file__).resolve().parents[2]
NAME = re.compile(r"^recoil_[a-z][a-z0-9_]*[a-z0-9]$")
LABEL = re.compile(r"^[a-z][a-z0-9_]*$")
# Units Prometheus says not to use: scale prefixes and non-base units.
NON_BASE_UNITS = ("_milliseconds", "_ms", "_minutes", "_hours", "_percent", "_kilobytes")


@pytest.mark.parametrize("metric", CATALOGUE, ids=lambda m: m.name)
def test_names_follow_prometheus_conventions(metric: catalogue.Metric) -> None:
    assert NAME.match(metric.name), metric.name
    assert metric.help.strip(), "every metric needs help text"
    is_total = metric.name.endswith("_total")
    assert is_total == (metric.type is MetricType.COUNTER), "_total is for counters, only"
    base = metric.name.removesuffix("_total")
    if metric.unit:
        assert metric.unit in ("seconds", "ratio", "messages")
        assert base.endswith(f"_{metric.unit}"), f"{metric.name} must end with _{metric.unit}"
    for suffix in ("_seconds", "_ratio", "_messages"):
        if base.endswith(suffix):
            assert metric.unit == suffix[1:], f"{metric.name}: unit must be {suffix[1:]}"
    if metric.type is MetricType.HISTOGRAM:
        assert metric.unit == "seconds" and metric.buckets == tuple(sorted(metric.buckets))
    assert not any(unit in metric.name for unit in NON_BASE_UNITS)
    for label in metric.label_names:
        assert LABEL.match(label) and label not in ("job", "instance", "le", "quantile"), label
    assert len(set(metric.label_names)) == len(metric.label_names)


def test_names_are_unique_and_every_part_exports_something() -> None:
    assert len({m.name for m in CATALOGUE}) == len(CATALOGUE)
    assert {m.part for m in CATALOGUE} == set(Part)


def test_markdown_table_is_generated_from_the_catalogue() -> None:
    text = catalogue.markdown_table()
    assert catalogue.MARKDOWN_PATH.read_text() == text, "run: python -m monitoring.catalogue"
    for metric in CATALOGUE:
        assert f"| `{metric.name}` | {metric.type} |" in text


def test_exposition_of_the_catalogue_passes_promtool_check_metrics(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    metrics = catalogue.create_all(registry)
    # Give every labelled metric one child so its series (and labels) are exposed.
    for m in CATALOGUE:
        child = metrics[m.name].labels(**{n: "x" for n in m.label_names}) if m.labels else None
        target = child if child is not None else metrics[m.name]
        if m.type is MetricType.HISTOGRAM:
            target.observe(0.02)  # type: ignore[attr-defined]
        elif m.type is MetricType.COUNTER:
            target.inc()  # type: ignore[attr-defined]
        else:
            target.set(1.0)  # type: ignore[attr-defined]
    exposition = generate_latest(registry)
    done = subprocess.run(
        ["promtool", "check", "metrics"], input=exposition, capture_output=True, timeout=30
    )
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    assert done.stdout.strip() == b"" and done.stderr.strip() == b"", "promtool found lint issues"
    families = {f.name: f.type for f in registry.collect()}
    assert families == {m.family: m.type.value for m in CATALOGUE}


PARTS = [(part, module, cls) for part, (module, cls) in PART_CLASSES.items()]


def test_every_part_has_its_metrics_class() -> None:
    """The next test checks every part: none may be missing its metrics class."""
    assert {part for part, _, _ in PARTS} == set(Part), "every part must export its metrics"
    for _, module, cls in PARTS:
        assert (REPO / module.replace(".", "/")).with_suffix(".py").is_file(), module
        assert re.search(rf"^class {cls}\b", _source(module), re.MULTILINE), f"{module}.{cls}"


def _source(module: str) -> str:
    return (REPO / module.replace(".", "/")).with_suffix(".py").read_text()


@pytest.mark.parametrize(("part", "module", "cls"), PARTS, ids=[m for _, m, _ in PARTS])
def test_part_registers_exactly_its_catalogued_metrics(part: Part, module: str, cls: str) -> None:
    metrics_class = getattr(importlib.import_module(module), cls, None)
    assert metrics_class is not None, f"{module} must define {cls}(registry)"
    registry = CollectorRegistry()
    metrics_class(registry)
    wanted = {m.family: m for m in catalogue.of_part(part)}
    families = {f.name: f for f in registry.collect()}
    assert set(families) == set(wanted), (
        f"{module}.{cls}: missing {sorted(set(wanted) - set(families))}, "
        f"not catalogued {sorted(set(families) - set(wanted))}"
    )
    for family, found in families.items():
        assert found.type == wanted[family].type.value, f"{family} is a {found.type}"
        assert found.documentation == wanted[family].help, f"{family}: help text"
    # Label names and buckets are only visible on the collectors (prometheus-client keeps
    # them there).
    for collector in list(registry._collector_to_names):
        if isinstance(collector, MetricWrapperBase):
            name = collector._name
            expected = wanted[name].label_names
            assert tuple(collector._labelnames) == expected, f"{name} labels"
            if isinstance(collector, Histogram):
                assert tuple(collector._upper_bounds[:-1]) == wanted[name].buckets, name
    text = generate_latest(registry).decode()
    assert "recoil_" in text


# Where the parts' code lives; only monitoring/catalogue.py may construct a metric.
PART_PACKAGES = ("streams", "learner", "serving", "simulator", "monitoring", "recoil", "bench")
METRIC_TYPES = re.compile(r"\b(Counter|Gauge|Histogram|Summary|Info|Enum)\(")
PROMETHEUS_IMPORT = re.compile(
    r"^\s*from prometheus_client(?:\.metrics)? import ([^\n]*(?:\([^)]*\))?)", re.MULTILINE
)


def test_no_part_creates_a_metric_outside_the_catalogue() -> None:
    """A metric made by hand would bypass the catalogue's names and help texts."""
    offenders = []
    for package in PART_PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if path == REPO / "monitoring" / "catalogue.py":
                continue
            text = path.read_text()
            imported = " ".join(PROMETHEUS_IMPORT.findall(text))
            made = set(METRIC_TYPES.findall(text)) & set(re.findall(r"\w+", imported))
            if made or re.search(r"prometheus_client\.(Counter|Gauge|Histogram|Summary)\(", text):
                offenders.append(f"{path.relative_to(REPO)}: {sorted(made)}")
    assert offenders == [], "create metrics with monitoring.catalogue.create_part"


def test_create_part_starts_closed_counter_series_at_zero() -> None:
    registry = CollectorRegistry()
    catalogue.create_part(Part.STREAMS, registry)
    for code in INVALID_CODES:
        value = registry.get_sample_value("recoil_stream_invalid_events_total", {"reason": code})
        assert value == 0, code
    for kind in LABEL_KINDS:
        value = registry.get_sample_value("recoil_stream_training_examples_total", {"kind": kind})
        assert value == 0, kind
    learner = CollectorRegistry()
    catalogue.create_part(Part.LEARNER, learner)
    # A gauge has no meaningful 0: the loss appears with the first step.
    assert learner.get_sample_value("recoil_learner_loss", {"term": "total"}) is None


def test_part_metrics_are_handed_out_by_name_and_type() -> None:
    metrics = catalogue.create_part(Part.SERVING, CollectorRegistry())
    assert isinstance(metrics.counter("recoil_serving_requests_total"), Counter)
    with pytest.raises(TypeError, match="counter"):
        metrics.gauge("recoil_serving_requests_total")
    with pytest.raises(KeyError, match="serving"):
        metrics.gauge("recoil_learner_loss")


def test_invalid_codes_are_the_contracts() -> None:
    """The reason label takes every Invalid.code, the stream worker's own included."""
    reason = catalogue.metric("recoil_stream_invalid_events_total").labels[0]
    assert reason.values == INVALID_CODES
    assert {"wrong_key", "processing_error"} <= set(INVALID_CODES)
