"""The metric catalogue: Prometheus naming conventions, the generated table, and the parts.

Each part's metrics class (streams, learner, serving, simulator) must register
exactly its catalogued names, types and labels. Only the parts whose module
exists are checked; a module that exists but disagrees fails.
"""

from __future__ import annotations

import importlib
import re
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from monitoring import catalogue
from monitoring.catalogue import CATALOGUE, PART_CLASSES, MetricType, Part

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


def _part_modules() -> list[tuple[Part, str, str]]:
    """(part, module, class) for every part whose metrics class exists in this checkout.

    The class is found by name anywhere outside tests/ (serving's placement is up to its
    developers, and ``simulator/metrics.py`` holds ranking metrics, not the exporter).
    """
    sources = [
        path
        for path in sorted(REPO.glob("**/*.py"))
        if path.relative_to(REPO).parts[0] not in ("tests", "build", "bench", ".venv")
        and "site-packages" not in path.parts
    ]
    found: list[tuple[Part, str, str]] = []
    for part, (_, cls) in PART_CLASSES.items():
        for path in sources:
            if re.search(rf"^class {cls}\b", path.read_text(errors="replace"), re.MULTILINE):
                module = ".".join(path.relative_to(REPO).with_suffix("").parts)
                found.append((part, module, cls))
    return found


PARTS = _part_modules()


def test_known_part_modules_are_reported() -> None:
    """The next test checks every part: none may be missing its metrics class."""
    print("metrics classes checked:", [f"{m}.{c}" for _, m, c in PARTS])
    assert {part for part, _, _ in PARTS} == set(Part), "every part must export its metrics"


@pytest.mark.parametrize(("part", "module", "cls"), PARTS, ids=[m for _, m, _ in PARTS])
def test_part_registers_exactly_its_catalogued_metrics(part: Part, module: str, cls: str) -> None:
    metrics_class = getattr(importlib.import_module(module), cls, None)
    assert metrics_class is not None, f"{module} must define {cls}(registry)"
    registry = CollectorRegistry()
    metrics_class(registry)
    wanted = {m.family: m for m in catalogue.of_part(part)}
    families = {f.name: f.type for f in registry.collect()}
    assert set(families) == set(wanted), (
        f"{module}.{cls}: missing {sorted(set(wanted) - set(families))}, "
        f"not catalogued {sorted(set(families) - set(wanted))}"
    )
    for family, kind in families.items():
        assert kind == wanted[family].type.value, f"{family} is a {kind}"
    # Label names are only visible on the collectors (prometheus-client keeps them there).
    for collector in list(registry._collector_to_names):
        if isinstance(collector, MetricWrapperBase):
            name = collector._name
            expected = wanted[name].label_names
            assert tuple(collector._labelnames) == expected, f"{name} labels"
    text = generate_latest(registry).decode()
    assert "recoil_" in text
