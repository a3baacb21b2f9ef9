"""Every PromQL expression monitoring/ asks Prometheus, in one list, and the names they read.

The live check evaluates them all (each must return data), the unit tests parse
them with promtool and check that they read only catalogued metrics and
recording rules, and ``recoil report`` plots the dashboards' share of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from monitoring import dashboards, rules
from monitoring.catalogue import CATALOGUE, MetricType

_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_RECOIL_NAME = re.compile(r"\b(?:recoil_[a-z0-9_]+|[a-z_]+:[a-z0-9_]+:[a-z0-9_]+)\b")
# Series Prometheus itself makes: the scrape health and the alert state.
BUILTIN_SERIES = frozenset({"up", "ALERTS"})


@dataclass(frozen=True)
class Expression:
    source: str  # where it comes from, e.g. "dashboard recoil-learner / Loss terms [A]"
    expr: str  # ready to send (template variables substituted)


def all_expressions(rate_interval: str = "1m") -> list[Expression]:
    """Dashboard targets, recording rules and alert signals (not the alert conditions)."""
    found: list[Expression] = []
    for board in dashboards.DASHBOARDS:
        for panel in board.panels:
            for i, target in enumerate(panel.targets):
                found.append(
                    Expression(
                        f"dashboard {board.uid} / {panel.title} [{chr(65 + i)}]",
                        dashboards.instantiate(target.expr, rate_interval),
                    )
                )
    for recording in rules.all_recordings():
        found.append(Expression(f"recording rule {recording.record}", recording.expr))
    for alert in rules.all_alerts():
        for i, signal in enumerate(alert.signals):
            found.append(Expression(f"alert {alert.alert} signal {i}", signal))
    return found


def series_names(expr: str) -> set[str]:
    """The recoil metric and recording-rule names an expression reads."""
    return set(_RECOIL_NAME.findall(_QUOTED.sub('""', expr)))


def known_series() -> set[str]:
    """Every series name an expression may read: catalogued ones (with histogram parts)
    and recording rules."""
    names: set[str] = set()
    for metric in CATALOGUE:
        names.add(metric.name)
        if metric.type is MetricType.HISTOGRAM:
            names |= {f"{metric.name}_bucket", f"{metric.name}_sum", f"{metric.name}_count"}
    names |= {r.record for r in rules.all_recordings()}
    return names
