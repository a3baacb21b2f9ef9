"""``recoil report``: the dashboards as PNG plots, from Prometheus' ``query_range`` API.

For people without Grafana: every panel of the chosen dashboards (the same
PromQL, from :mod:`monitoring.dashboards`) becomes one subplot; interval bounds
are drawn as a shaded band around their estimate. One PNG per dashboard.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from monitoring.dashboards import DASHBOARDS, Dashboard, Panel, instantiate
from recoil.core.checks import http_url_problem

log = logging.getLogger(__name__)
MAX_POINTS = 11_000  # Prometheus refuses query_range with more points per series
MAX_LEGEND = 12  # legend entries per subplot before the rest are summarised
# tab20's dark shades then light ones: 20 distinguishable colours for versions x arms.
COLOURS = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
    "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
]  # fmt: skip
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class ReportError(RuntimeError):
    """Why no report could be made, in words a person can act on."""


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    times: np.ndarray  # (T,) unix seconds
    values: np.ndarray  # (T,) float, NaN where Prometheus returned NaN

    @property
    def key(self) -> tuple[tuple[str, str], ...]:
        """Labels without the metric name: an estimate and its bounds share it."""
        return tuple(sorted((k, v) for k, v in self.labels.items() if k != "__name__"))


def parse_duration(text: str) -> float:
    """Seconds in ``15s``, ``1h``, ``2d`` (Prometheus style) or a plain number."""
    match = _DURATION.match(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a duration like 15s, 5m, 1h or 2d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def format_duration(seconds: float) -> str:
    return f"{math.ceil(seconds)}s"


def legend(fmt: str, labels: dict[str, str]) -> str:
    """Grafana's legendFormat: ``{{label}}`` placeholders; empty/__auto shows the labels."""
    if fmt and fmt != "__auto":
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)
    shown = {k: v for k, v in labels.items() if k not in ("__name__", "job", "instance")}
    text = ", ".join(f"{k}={v}" for k, v in sorted(shown.items()))
    return text or labels.get("__name__", "value")


class PrometheusClient:
    """The two calls the report needs, with errors that say what to fix."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        problem = http_url_problem(url)
        if problem:  # urllib's own error is a traceback at the first request
            raise ReportError(
                f"--prometheus {url[:200]!r} is not a URL like http://127.0.0.1:9090 ({problem})"
            )
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _get(self, path: str, params: dict[str, str]) -> object:
        address = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(address, timeout=self.timeout) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            with contextlib.suppress(json.JSONDecodeError):
                detail = json.loads(detail).get("error", detail)
            raise ReportError(f"Prometheus at {self.url} answered {exc.code}: {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ReportError(
                f"cannot reach Prometheus at {self.url}: {reason} "
                "(is it running? pass --prometheus http://HOST:9090)"
            ) from exc
        except ValueError as exc:  # not JSON, or not UTF-8
            raise ReportError(f"{self.url} did not answer JSON: is it Prometheus?") from exc
        if not isinstance(body, dict) or body.get("status") != "success" or "data" not in body:
            raise ReportError(f"Prometheus at {self.url} refused {path}: {str(body)[:300]}")
        return body["data"]

    def check(self) -> str:
        """Prometheus' version; fails early with a clear message when unreachable."""
        data = self._get("status/buildinfo", {})
        return str(data.get("version", "?")) if isinstance(data, dict) else "?"

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        data = self._get(
            "query_range", {"query": expr, "start": str(start), "end": str(end), "step": str(step)}
        )
        result = data.get("result", []) if isinstance(data, dict) else []
        series = []
        try:
            for item in result:
                points = np.array(item["values"], dtype=float).reshape(-1, 2)  # (T, 2)
                series.append(Series(dict(item["metric"]), points[:, 0], points[:, 1]))
        except (KeyError, TypeError, ValueError) as exc:  # another server's "success"
            raise ReportError(
                f"{self.url} answered {expr!r} with a result that is not a Prometheus "
                f"matrix ({exc!r}): is it Prometheus?"
            ) from None
        return series


@dataclass(frozen=True)
class PanelData:
    panel: Panel
    lines: list[tuple[str, Series]]  # (legend, series) for estimates
    bands: dict[tuple[tuple[str, str], ...], dict[str, Series]]  # key -> {"lower"/"upper"}

    @property
    def empty(self) -> bool:
        return not any(np.isfinite(s.values).any() for _, s in self.lines)


def fetch_panel(
    client: PrometheusClient, panel: Panel, start: float, end: float, step: float
) -> PanelData:
    rate_interval = format_duration(max(60.0, 4 * step))
    lines: list[tuple[str, Series]] = []
    bands: dict[tuple[tuple[str, str], ...], dict[str, Series]] = {}
    for target in panel.targets:
        expr = instantiate(target.expr, rate_interval)
        for series in client.query_range(expr, start, end, step):
            if target.band:
                bands.setdefault(series.key, {})[target.band] = series
            else:
                lines.append((legend(target.legend, series.labels), series))
    lines.sort(key=lambda item: _natural(item[0]))  # v2 before v10
    return PanelData(panel, lines, bands)


def _natural(text: str) -> list[tuple[int, int | str]]:
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", text)]


def _format_axis(ax: object, unit: str) -> None:
    from matplotlib.ticker import FuncFormatter, PercentFormatter

    if unit == "percentunit":
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))  # type: ignore[attr-defined]
    elif unit == "s":
        ax.yaxis.set_major_formatter(  # type: ignore[attr-defined]
            FuncFormatter(lambda v, _: f"{v * 1000:.0f} ms" if abs(v) < 1 else f"{v:.1f} s")
        )
    elif unit == "ops":
        ax.set_ylabel("per second")  # type: ignore[attr-defined]


def render(title: str, panels: Sequence[PanelData], path: Path, start: float, end: float) -> None:
    """One PNG: a grid of subplots, two per row, all over the same time range."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    rows = max(1, math.ceil(len(panels) / 2))
    fig, axes = plt.subplots(rows, 2, figsize=(16, 4.2 * rows), squeeze=False, layout="constrained")
    for ax, data in zip(axes.flat, panels, strict=False):
        ax.set_title(data.panel.title, fontsize=11, loc="left")
        _format_axis(ax, data.panel.unit)
        ax.grid(alpha=0.3)
        ax.set_xlim(datetime.fromtimestamp(start), datetime.fromtimestamp(end))
        if data.empty:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
            continue
        for i, (name, series) in enumerate(data.lines):
            times = [datetime.fromtimestamp(t) for t in series.times]
            # A series with few points (a rule that just started) shows as dots, not nothing.
            marker = "o" if np.isfinite(series.values).sum() < 3 else None
            (line,) = ax.plot(
                times,
                series.values,
                lw=1.6,
                marker=marker,
                ms=4,
                color=COLOURS[i % len(COLOURS)],
                label=name if i < MAX_LEGEND else None,
            )
            band = data.bands.get(series.key, {})
            if "lower" in band and "upper" in band:
                lo, hi = _aligned(series, band["lower"]), _aligned(series, band["upper"])
                ax.fill_between(times, lo, hi, color=line.get_color(), alpha=0.15, lw=0)
        if len(data.lines) > MAX_LEGEND:
            ax.plot([], [], " ", label=f"... and {len(data.lines) - MAX_LEGEND} more")
        if any(name for name, _ in data.lines):
            ax.legend(fontsize=7, loc="best", ncol=2 if len(data.lines) > 6 else 1)
        locator = mdates.AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(title, fontsize=14, x=0.01, ha="left")
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _aligned(line: Series, bound: Series) -> np.ndarray:
    """The bound's values at the line's timestamps (NaN where the bound has none)."""
    lookup = dict(zip(bound.times.tolist(), bound.values.tolist(), strict=True))
    return np.array([lookup.get(t, np.nan) for t in line.times.tolist()])


def write_report(
    client: PrometheusClient,
    out: Path,
    range_seconds: float,
    step_seconds: float,
    dashboards: Sequence[Dashboard] = DASHBOARDS,
    end: float | None = None,
) -> dict[Path, list[PanelData]]:
    """Query every panel of ``dashboards`` and write ``out/<uid>.png`` for each."""
    if range_seconds / step_seconds > MAX_POINTS:
        raise ReportError(
            f"--range / --step gives {range_seconds / step_seconds:.0f} points per series; "
            f"Prometheus allows {MAX_POINTS}: raise --step"
        )
    version = client.check()
    log.info("Prometheus %s at %s", version, client.url)
    end = time.time() if end is None else end
    start = end - range_seconds
    out.mkdir(parents=True, exist_ok=True)
    written: dict[Path, list[PanelData]] = {}
    for board in dashboards:
        panels = [fetch_panel(client, p, start, end, step_seconds) for p in board.panels]
        path = out / f"{board.uid}.png"
        render(f"{board.title}  (last {format_duration(range_seconds)})", panels, path, start, end)
        empty = [p.panel.title for p in panels if p.empty]
        log.info("wrote %s (%d panels, %d without data)", path, len(panels), len(empty))
        if empty:
            log.warning("%s: no data for %s", board.uid, "; ".join(empty))
        written[path] = panels
    return written
