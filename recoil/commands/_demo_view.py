"""What ``recoil demo`` prints and draws: one line per probed version, the A/B summary.

Pure functions of the simulator's outputs (probe results, one dict per arm and
model version; the A/B summary, ``simulator.ab.ArmSummary.to_dict`` per arm), so
they are tested without running the loop.

Responsiveness over versions: each version's probe is one noisy measurement of
a model that keeps learning, so the summary gives the mean over an arm's
versions with a 95% t-interval over versions, and each version's line says how
far it lies from the mean of the versions before it, in units of their spread:
a reader can tell a version that measured differently from one that regressed.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RATE_NAMES = {"dislike": "dislike rate", "repeat_dislike": "repeat-dislike rate",
              "engagement": "engagement"}  # fmt: skip
# Two-sided 95% quantiles of Student's t by degrees of freedom (normal beyond 30).
_T95 = (12.71, 4.30, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26, 2.23, 2.20, 2.18, 2.16, 2.14,
        2.13, 2.12, 2.11, 2.10, 2.09, 2.09, 2.08, 2.07, 2.07, 2.06, 2.06, 2.06, 2.05, 2.05,
        2.05, 2.04)  # fmt: skip


def pct(value: float | None, signed: bool = True) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{100 * value:+.1f}%" if signed else f"{100 * value:.2f}%"


def interval(ci: Sequence[float | None], signed: bool = True) -> str:
    return f"[{pct(ci[0], signed)}, {pct(ci[1], signed)}]"


def mean_interval(values: Sequence[float]) -> tuple[float, tuple[float, float]]:
    """Mean and 95% t-interval of the finite values (a NaN interval under two)."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, (math.nan, math.nan)
    mean = statistics.fmean(finite)
    if len(finite) < 2:
        return mean, (math.nan, math.nan)
    t = _T95[len(finite) - 2] if len(finite) - 1 <= len(_T95) else 1.96
    half = t * statistics.stdev(finite) / math.sqrt(len(finite))
    return mean, (mean - half, mean + half)


def version_line(result: dict[str, Any], earlier: Sequence[dict[str, Any]], elapsed: float) -> str:
    """One probed version: responsiveness with intervals, and how it compares with earlier
    versions of its arm (z = distance from their mean in units of their spread)."""
    parts = []
    for similarity in ("cluster", "creator"):
        value = float(result[similarity])
        text = f"{similarity} {pct(value)} {interval(result[f'ci95_{similarity}'])}"
        before = [float(r[similarity]) for r in earlier if math.isfinite(float(r[similarity]))]
        if len(before) >= 3 and math.isfinite(value):
            spread = statistics.stdev(before)
            z = (value - statistics.fmean(before)) / spread if spread > 0 else 0.0
            text += f" z={z:+.1f}"
        parts.append(text)
    note = "" if len(earlier) >= 3 else " (z after 3 versions)"
    return (
        f"[{elapsed:5.0f}s] {result['arm']} v{result['model_version']}: " + ", ".join(parts) + note
    )


def ab_line(summary: Sequence[dict[str, Any]], elapsed: float) -> str:
    """Impressions and dislike rate per arm, and the dislike change against the baseline."""
    parts = [
        f"{s['arm']} {s['impressions']} impr, dislike {pct(s['rates']['dislike'][0], False)}"
        for s in summary
    ]
    for s in summary:
        if "dislike" in s["changes"]:
            value, ci = s["changes"]["dislike"]
            text = f"dislike change {pct(value)} {interval(ci)}"
            if cuped := s.get("changes_cuped", {}).get("dislike"):
                text += f", CUPED {pct(cuped['change'])} {interval(cuped['ci95'])}"
            parts.append(text)
    return f"[{elapsed:5.0f}s] A/B: " + "; ".join(parts)


def summary_text(
    results: Sequence[dict[str, Any]], summary: Sequence[dict[str, Any]], baseline: str
) -> str:
    """The final report: per arm responsiveness over versions and live rates, then A/B."""
    lines = ["| arm | users | impressions | versions | responsiveness cluster (mean [95% CI] "
             "over versions) | responsiveness creator | dislike rate | repeat-dislike rate "
             "| engagement |", "|---|---:|---:|---:|---|---|---|---|---|"]  # fmt: skip
    for s in summary:
        probes = [r for r in results if r["arm"] == s["arm"]]
        cells = []
        for similarity in ("cluster", "creator"):
            mean, ci = mean_interval([float(r[similarity]) for r in probes])
            cells.append(f"{pct(mean)} {interval(ci)}")
        rates = [
            f"{pct(s['rates'][r][0], False)} {interval(s['rates'][r][1], False)}"
            for r in RATE_NAMES
        ]
        lines.append(
            f"| {s['arm']} | {s['users']} | {s['impressions']} | {len(probes)} | "
            + " | ".join(cells + rates)
            + " |"
        )
    lines += ["", f"A/B changes against {baseline} (relative, 95% CI; users resampled):"]
    for s in summary:
        for rate, name in RATE_NAMES.items():
            if rate in s["changes"]:
                value, ci = s["changes"][rate]
                lines.append(f"- {s['arm']}: {name} {pct(value)} {interval(ci)}")
    adjusted = [s for s in summary if s.get("changes_cuped")]
    if adjusted:
        lines += [
            "",
            "CUPED-adjusted (each user's same rate on the logging policy's impressions as "
            "the covariate; the covariate's own change should hold 0):",
        ]
    for s in adjusted:
        for rate, name in RATE_NAMES.items():
            if c := s["changes_cuped"].get(rate):
                lines.append(
                    f"- {s['arm']}: {name} {pct(c['change'])} {interval(c['ci95'])} "
                    f"(theta {c['theta']:.2f}; covariate {pct(c['covariate_change'])} "
                    f"{interval(c['covariate_ci95'])})"
                )
    return "\n".join(lines) + "\n"


def format_table(results: Sequence[dict[str, Any]]) -> str:
    """Markdown table of probe results: one row per (arm, model version)."""
    header = (
        "| arm | version | responsiveness cluster [95% CI] | responsiveness creator [95% CI] "
        "| dislike rate | repeat dislike rate | impressions |\n|---|---:|---|---|---:|---:|---:|\n"
    )
    rows = []
    for r in sorted(results, key=lambda r: (r["arm"], r["model_version"])):
        rows.append(
            f"| {r['arm']} | {r['model_version']} "
            f"| {pct(r['cluster'])} {interval(r['ci95_cluster'])} "
            f"| {pct(r['creator'])} {interval(r['ci95_creator'])} "
            f"| {pct(r['dislike_rate'], False)} | {pct(r['repeat_dislike_creator_rate'], False)} "
            f"| {r['impressions']} |"
        )
    return header + "\n".join(rows) + "\n"


def plot(results: Sequence[dict[str, Any]], summary: Sequence[dict[str, Any]], path: Path) -> None:
    """Top: responsiveness per version and arm with intervals. Bottom: live rates per arm
    and the A/B changes against the baseline, with intervals (what Grafana's A/B panel shows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    arms = sorted({r["arm"] for r in results} | {s["arm"] for s in summary})
    for ax, similarity in zip(axes[0], ("cluster", "creator"), strict=True):
        for arm in arms:
            rows = sorted((r for r in results if r["arm"] == arm), key=lambda r: r["probed_at"])
            xs = list(range(1, len(rows) + 1))
            ax.plot(xs, [100 * r[similarity] for r in rows], marker="o", label=arm)
            low = [100 * r[f"ci95_{similarity}"][0] for r in rows]
            high = [100 * r[f"ci95_{similarity}"][1] for r in rows]
            ax.fill_between(xs, low, high, alpha=0.2)
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set_title(f"responsiveness by {similarity} (%)")
        ax.set_xlabel("probed version (in order)")
    axes[0][0].legend()
    rates_ax, change_ax = axes[1]
    width = 0.8 / max(1, len(summary))
    for i, s in enumerate(summary):
        bars = [j + i * width for j in range(len(RATE_NAMES))]
        heights = [100 * s["rates"][r][0] for r in RATE_NAMES]
        errors = _errors([s["rates"][r] for r in RATE_NAMES])
        rates_ax.bar(bars, heights, width, yerr=errors, capsize=3, label=s["arm"])
    rates_ax.set_xticks([j + 0.4 - width / 2 for j in range(len(RATE_NAMES))])
    rates_ax.set_xticklabels(list(RATE_NAMES.values()))
    rates_ax.set_yscale("log")
    rates_ax.set_title("live rates per arm (%, 95% CI over users)")
    rates_ax.legend()
    labels: list[str] = []
    plain: list[Sequence[Any]] = []
    adjusted: list[Sequence[Any]] = []
    for s in summary:
        for rate, name in RATE_NAMES.items():
            if rate in s["changes"]:
                labels.append(f"{s['arm']}\n{name}")
                plain.append(s["changes"][rate])
                c = s.get("changes_cuped", {}).get(rate)
                adjusted.append((c["change"], c["ci95"]) if c else (math.nan, (math.nan,) * 2))
    if labels:
        slots = range(len(labels))
        for shift, pairs, name, color in ((-0.2, plain, "plain", "tab:purple"),
                                          (0.2, adjusted, "CUPED", "tab:olive")):  # fmt: skip
            values = [100 * v if math.isfinite(v) else 0.0 for v, _ in pairs]
            change_ax.barh([r + shift for r in slots], values, 0.4, xerr=_errors(pairs),
                           capsize=3, color=color, label=name)  # fmt: skip
        change_ax.set_yticks(slots)
        change_ax.set_yticklabels(labels, fontsize=8)
        change_ax.legend(fontsize=8)
    change_ax.axvline(0, color="grey", linewidth=0.8)
    change_ax.set_title("A/B change against the baseline (%, 95% CI)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _errors(pairs: Sequence[Sequence[Any]]) -> list[list[float]]:
    """matplotlib's [[below...], [above...]] error bars (in %) from (value, (lo, hi)) pairs."""
    below, above = [], []
    for value, (lo, hi) in pairs:
        ok = all(x is not None and math.isfinite(x) for x in (value, lo, hi))
        below.append(100 * (value - lo) if ok else 0.0)
        above.append(100 * (hi - value) if ok else 0.0)
    return [below, above]
