"""The live monitoring check: monitoring/'s config and rules against real metrics targets.

Given the ``host:port`` of running processes' ``/metrics``, start a real
Prometheus (the ``prometheus_factory`` fixture) with monitoring/prometheus.yml
adapted to those targets and with the committed rule files, wait until every
target is scraped, then evaluate every dashboard expression, recording rule and
alert signal through the HTTP API until each returns data (at least one sample that
is not NaN). Rule evaluation errors fail the check too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from monitoring.expressions import Expression, all_expressions
from monitoring.scrape import scrape_config_for
from tests.support.prometheus import PrometheusServer


@dataclass(frozen=True)
class LiveCheck:
    """What the check saw: the server (still running) and the series count per expression."""

    server: PrometheusServer
    series: dict[str, int]  # Expression.source -> number of series returned


def check_monitoring(
    prometheus_factory: Callable[..., PrometheusServer],
    targets: Mapping[str, Sequence[str]] | Sequence[str],
    timeout: float = 150.0,
    scrape_interval: str = "1s",
) -> LiveCheck:
    """Run the check; raise AssertionError naming every expression that stayed empty.

    ``timeout`` covers the slowest expressions: the responsiveness rules need two probed
    model versions, and the rate and quantile panels two scrapes with observations.
    """
    server = prometheus_factory(scrape_config_for(targets, interval=scrape_interval))
    hosts = list(targets) if not isinstance(targets, Mapping) else []
    if isinstance(targets, Mapping):
        hosts = [h for group in targets.values() for h in group]
    deadline = time.monotonic() + timeout
    server.wait_for(f"count(up == 1) == {len(hosts)}", timeout=min(60.0, timeout))
    pending: list[Expression] = all_expressions(rate_interval="1m")
    series: dict[str, int] = {}
    while pending and time.monotonic() < deadline:
        still: list[Expression] = []
        for expression in pending:
            result = server.query(expression.expr)
            # NaN alone is no data: e.g. a quantile of a histogram nothing was observed in.
            if any(sample["value"][1] != "NaN" for sample in result):
                series[expression.source] = len(result)
            else:
                still.append(expression)
        pending = still
        if pending:
            time.sleep(1.0)
    if pending:
        lines = "\n".join(f"  {e.source}: {e.expr}" for e in pending)
        raise AssertionError(f"{len(pending)} expressions returned no data (or NaN):\n{lines}")
    problems = [
        f"{rule.get('name')}: {rule.get('lastError')}"
        for group in server.api("rules")["groups"]
        for rule in group["rules"]
        if rule.get("health") != "ok"
    ]
    assert not problems, "rules failing to evaluate:\n" + "\n".join(problems)
    return LiveCheck(server, series)
