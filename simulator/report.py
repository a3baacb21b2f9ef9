"""Writing results: JSON, a Markdown table and a PNG plot (matplotlib, Agg backend)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import torch

from learner.model import ModelConfig, SequenceRecommender
from learner.vocab import FIRST_INDEX

# The paper's Fig. 3b (section 4), for reference on the plot: (cluster, creator).
PAPER_RESPONSIVENESS = {
    "no_signal": (0.0, 0.0),
    "feature_only": (-0.227, -0.228),
    "feature_and_labels": (-0.608, -0.641),
}


def _pct(x: float | None, signed: bool = True) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{100 * x:+.1f}%" if signed else f"{100 * x:.2f}%"


def _finite(obj: Any) -> Any:
    """NaN (e.g. a relative change against a zero baseline) and an infinity (the loss of
    a run that diverged) become null: valid JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _num(x: float | None) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.4f}"


def push_weights_json(model: SequenceRecommender) -> list[float]:
    """The learned push as reports record it: ``a`` per age, newest first, before the
    away-only clamp (> 0 is off: the push only pushes away); empty without a push."""
    return [round(a, 4) for a in model.push_weights().tolist()]


def item_offsets_json(
    model: SequenceRecommender, item_ids: Sequence[str], most: int = 5
) -> dict[str, Any]:
    """What the model learned of the items' own dislike shares (``learner.item_feedback``):
    the catalogue's share, the spread of the ranking offsets over the items labelled, and
    the ``most`` items ranked down the furthest, each with its positive and
    not-to-recommend labels. Empty for a model without the offset. ``item_ids[j]`` is item
    row ``FIRST_INDEX + j``."""
    offsets = model.item_offsets()
    if offsets is None or model.item_feedback is None:
        return {}
    counts = model.item_feedback[FIRST_INDEX:].double()
    off = offsets[FIRST_INDEX:].double()
    labelled = counts.sum(1) > 0
    total = float(counts.sum())
    summary: dict[str, Any] = {
        "items_labelled": int(labelled.sum()),
        "dislike_share": round(float(counts[:, 1].sum()) / total, 4) if total else 0.0,
    }
    if bool(labelled.any()):
        q = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0], dtype=torch.float64)
        values = torch.quantile(off[labelled], q).tolist()
        summary["offset_quantiles"] = dict(
            zip(("min", "p10", "p50", "p90", "max"), (round(v, 4) for v in values), strict=True)
        )
    order = torch.argsort(off, stable=True)[: min(most, len(item_ids))].tolist()
    summary["most_lowered"] = [
        [item_ids[j], int(counts[j, 0]), int(counts[j, 1]), round(float(off[j]), 4)]
        for j in order
        if float(off[j]) < 0
    ]
    return summary


def trained_model_json(trained: Mapping[str, ModelConfig]) -> dict[str, Any]:
    """The model config the arms were trained with (``SequenceRecommender.current_config``:
    table sizes grown to the vocabulary, not the starting config's). Where arms' table
    sizes differ, that size is recorded per arm (``{arm: rows}``)."""
    records = {arm: asdict(config) for arm, config in trained.items()}
    if not records:
        return {}
    first = next(iter(records.values()))
    return {
        key: value if all(r[key] == value for r in records.values())
        else {arm: r[key] for arm, r in records.items()}
        for key, value in first.items()
    }  # fmt: skip


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_finite(obj), indent=2, allow_nan=False) + "\n")
    tmp.replace(path)  # readers never see half a file


def _logged_lines(stats: dict[str, Any]) -> list[str]:
    """What the logs and the world say should follow a dislike (absent in older runs)."""
    implied = stats.get("logged_responsiveness")
    if not implied:
        return []
    lines = [
        f"In the logs, after {implied['long_dwell_dislikes']:,} long dwells with a dislike the "
        "user's next positive comes from the same cluster / creator "
        f"{_pct(implied['cluster'])} / {_pct(implied['creator'])} as often as after the other "
        "long dwells: a comparison of different histories, in which users dislike what they "
        "were less drawn to. "
        f"{_pct(stats.get('history_cluster_share', float('nan')), False)} of a logged "
        "history's recent items share the next item's cluster (the probe's trajectories: "
        "`trajectory_cluster_share` in `details.json`).",
        "",
    ]
    effect = stats.get("dislike_effect")
    if effect:
        lines += [
            f"The world's own effect of a dislike (`dislike_effect`: {effect['branched']:,} "
            "logged long dwells branched with and without a dislike, the same user and "
            "logging policy run on with common random numbers): the next positive comes "
            f"from the anchor's cluster / creator {_pct(effect['cluster'])} / "
            f"{_pct(effect['creator'])} as often. That is the probe's question asked of the "
            "world, the dislike's effect alone; a model that reads a dislike as evidence of "
            "the user's tastes may rightly move further, by an amount the comparison above "
            "cannot tell.",
            "",
        ]
    return lines


def ablation_markdown(ablation: dict[str, Any], details: dict[str, Any]) -> str:
    cfg = ablation["config"]
    stats = cfg["world_stats"]
    k = cfg["k"]
    lines = [
        f"# Responsiveness ablation — world `{cfg['world']['name']}` (seed {cfg['world']['seed']})",
        "",
        f"Logged {stats['impressions']:,} impressions of {stats['users']:,} users: "
        f"dislikes {_pct(stats['dislike_rate'], False)}, skips {_pct(stats['skip_rate'], False)}, "
        f"long dwells {_pct(stats['long_dwell_rate'], False)}; "
        f"{_pct(stats['dislikes_with_long_dwell'], False)} of dislikes follow a long dwell; "
        f"{_pct(stats['reexposed_after_dislike'], False)} of dislikes are followed by the same "
        f"creator within {stats['reexposure_horizon']} impressions, disliked again "
        f"{_pct(stats['dislike_rate_reexposed'], False)} of the time.",
        "",
        *_logged_lines(stats),
        f"Probe: {cfg['probe']['simulations']} simulations, k = {cfg['probe']['k']}, "
        f"top {cfg['probe']['top_n']} at step k+1. Closed loop: {cfg['closed_loop']['users']} "
        f"users x {cfg['closed_loop']['steps']} steps. Intervals: bootstrap 95%.",
        "",
        "| arm | responsiveness cluster | responsiveness creator | mass cluster / creator "
        f"| dislike rate (vs no_signal) | repeat dislike / creator | Recall@{k} (vs no_signal) "
        f"| NDCG@{k} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arm, r in ablation["arms"].items():
        vs = details.get(arm, {}).get("vs_no_signal", {})
        lo_c, hi_c = r["ci95_cluster"]
        lo_r, hi_r = r["ci95_creator"]
        dislike = _pct(r["dislike_rate"], False)
        recall = f"{r['recall_at_k']:.4f}"
        if vs:
            dislike += f" ({_pct(vs['dislike_rate'])})"
            recall += f" ({_pct(vs['recall_at_k'])})"
        lines.append(
            f"| {arm} | {_pct(r['responsiveness_cluster'])} [{_pct(lo_c)}, {_pct(hi_c)}] "
            f"| {_pct(r['responsiveness_creator'])} [{_pct(lo_r)}, {_pct(hi_r)}] "
            f"| {_pct(r.get('mass_responsiveness_cluster'))} / "
            f"{_pct(r.get('mass_responsiveness_creator'))} "
            f"| {dislike} | {_pct(r['repeat_dislike_creator_rate'], False)} "
            f"| {recall} | {r['ndcg_at_k']:.4f} |"
        )
    lines += _lowest_dislike_lines(ablation, details)
    lines += ["", f"Total time {cfg['seconds']['total']:.0f} s.", ""]
    return "\n".join(lines)


def _lowest_dislike_lines(ablation: dict[str, Any], details: dict[str, Any]) -> list[str]:
    """Each arm's closed-loop dislike rate against the lowest arm's, paired by user, after
    a blank line; nothing where ``details`` holds no such comparison."""
    versus = {
        arm: entry["dislike_rate_vs_lowest"]
        for arm, entry in details.items()
        if "dislike_rate_vs_lowest" in entry
    }
    if not versus:
        return []
    lowest = next(iter(versus.values()))["arm"]
    parts = [
        f"{arm} {_pct(v['change'])} [{_pct(v['ci95'][0])}, {_pct(v['ci95'][1])}]"
        for arm, v in versus.items()
    ]
    rate = _pct(ablation["arms"][lowest]["dislike_rate"], False)
    return [
        "",
        f"Closed-loop dislike rate against the lowest arm's ({lowest}, {rate}), paired by "
        f"user: {'; '.join(parts)}.",
    ]


def responsiveness_plot(ablation: dict[str, Any], path: Path) -> None:
    """Bars per arm (cluster, creator) with 95% intervals, the paper's values as markers."""
    arms = list(ablation["arms"])
    fig, ax = plt.subplots(figsize=(1.6 * len(arms) + 2.5, 4.2))
    width = 0.38
    for offset, (kind, colour) in zip(
        (-width / 2, width / 2), (("cluster", "tab:blue"), ("creator", "tab:orange")), strict=True
    ):
        values = [100 * ablation["arms"][a][f"responsiveness_{kind}"] for a in arms]
        cis = [ablation["arms"][a][f"ci95_{kind}"] for a in arms]
        lower = [v - 100 * lo for v, (lo, _) in zip(values, cis, strict=True)]
        upper = [100 * hi - v for v, (_, hi) in zip(values, cis, strict=True)]
        xs = [i + offset for i in range(len(arms))]
        ax.bar(xs, values, width, yerr=[lower, upper], capsize=4, color=colour, label=kind)
        for x, arm in zip(xs, arms, strict=True):
            if arm in PAPER_RESPONSIVENESS:
                paper = 100 * PAPER_RESPONSIVENESS[arm][0 if kind == "cluster" else 1]
                ax.plot(x, paper, marker="_", markersize=18, color="black")
    ax.plot([], [], marker="_", markersize=12, color="black", linestyle="", label="paper")
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xticks(range(len(arms)), arms, rotation=20, ha="right")
    ax.set_ylabel("responsiveness to a dislike (%)")
    world = ablation["config"]["world"]["name"]
    ax.set_title(f"Change of same-cluster / same-creator recommendations after a dislike ({world})")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_ablation(out_dir: Path, ablation: dict[str, Any], details: dict[str, Any]) -> None:
    _write_json(out_dir / "ablation.json", ablation)
    _write_json(out_dir / "details.json", details)
    (out_dir / "ablation.md").write_text(ablation_markdown(ablation, details))
    responsiveness_plot(ablation, out_dir / "responsiveness.png")


def backtest_markdown(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = [
        f"# Backtest — `{cfg['file']}`",
        "",
        f"{cfg['events']:,} events of {cfg['users']:,} users; the last {cfg['holdout_events']} "
        f"events of each user are held out ({cfg['test_positives']:,} positives, "
        f"{cfg['test_dislikes']:,} dislikes). Creator: {cfg['creator_note']}",
        "",
        "| arm | HR@10 positives | NDCG@10 positives | HR@10 dislikes (lower is better) "
        "| creator of a dislike in top 10 (lower is better) | HR@100 positives "
        "| HR@100 dislikes | steps (kept) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    keys = (
        "hr_at_10", "ndcg_at_10", "hr_at_10_dislikes", "hr_at_10_dislike_creator",
        "hr_at_100", "hr_at_100_dislikes",
    )  # fmt: skip
    for arm, r in result["arms"].items():
        cells = [_num(r.get(key)) for key in keys]
        training = r.get("training") or {}
        kept = training.get("best_step")
        steps = f"{training.get('steps', '—')}" + (f" ({kept})" if kept is not None else "")
        lines.append(f"| {arm} | " + " | ".join(cells) + f" | {steps} |")
    for arm, r in result["arms"].items():
        if r.get("trained_as"):
            lines += [
                "",
                f"{arm} is {r['trained_as']}'s run: on this log the two read the same "
                "histories and train on the same examples (it holds none of the labels that "
                "set them apart, such as skips), so it was trained once.",
            ]
        if r.get("stage_on"):
            training = r.get("training") or {}
            push = training.get("push_weights") or []
            off = ""
            if push and min(push) >= 0:
                # the offsets rank items down by their own dislike share whatever the push
                # does: with them that run still differs from the one it stages on
                effect = (
                    f"that run differs from {r['stage_on']} by the items' own dislike shares "
                    "alone (their ranking offsets)."
                    if training.get("item_offsets")
                    else f"with the default model that run scores as {r['stage_on']} does."
                )
                off = (
                    " The first seed's push ended off at every age (a >= 0; it only pushes "
                    f"away), so {effect}"
                )
            lines += [
                "",
                f"{arm} trained as a stage on {r['stage_on']}'s kept weights of the same "
                "seed: only its dislike parameters (the push, the gate, the map) learned, "
                f"from its labels.{off}",
            ]
    seeds = cfg.get("seeds") or []
    if len(seeds) > 1:
        lines += [
            "",
            f"Each arm trained with seeds {', '.join(map(str, seeds))}: the figures above are "
            "the seeds' mean (each test case's hit averaged over them), the intervals below "
            "resample the test cases. Per seed:",
            "",
            "| arm | seed | HR@10 positives | HR@10 dislikes | creator of a dislike in top 10 "
            "| kept step |",
            "|---|---|---|---|---|---|",
        ]
        for arm, r in result["arms"].items():
            for row in r.get("by_seed", []):
                cells = [
                    _num(row.get(key))
                    for key in ("hr_at_10", "hr_at_10_dislikes", "hr_at_10_dislike_creator")
                ]
                kept = row.get("best_step")
                lines.append(
                    f"| {arm} | {row['seed']} | " + " | ".join(cells) + f" | {kept or '—'} |"
                )
    for other in ("vs_no_signal", "vs_exclude_heuristic"):
        rows = [(arm, r[other]) for arm, r in result["arms"].items() if other in r]
        if not rows:
            continue
        lines += [
            "",
            f"Paired relative change {other.replace('_', ' ')} (95% interval over the same "
            "test cases):",
            "",
            "| arm | HR@10 positives | HR@10 dislikes | creator of a dislike in top 10 |",
            "|---|---|---|---|",
        ]
        for arm, change in rows:
            cells = [
                f"{_pct(change.get(key))} [{_pct(change.get(f'{key}_ci95', [None, None])[0])}, "
                f"{_pct(change.get(f'{key}_ci95', [None, None])[1])}]"
                for key in ("hr_at_10", "hr_at_10_dislikes", "hr_at_10_dislike_creator")
            ]
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    lines += ["", f"Total time {cfg['seconds']['total']:.0f} s.", ""]
    return "\n".join(lines)


def backtest_plot(result: dict[str, Any], path: Path) -> None:
    arms = list(result["arms"])
    fig, axes = plt.subplots(1, 3, figsize=(3 * len(arms) + 3, 4.0))
    for ax, (key, title) in zip(
        axes,
        (
            ("hr_at_10", "HR@10 of held-out positives"),
            ("hr_at_10_dislikes", "HR@10 of held-out dislikes"),
            ("hr_at_100_dislikes", "HR@100 of held-out dislikes"),
        ),
        strict=True,
    ):
        values = [result["arms"][a].get(key, float("nan")) for a in arms]
        cis = [
            result["arms"][a].get(f"{key}_ci95", [v, v]) for a, v in zip(arms, values, strict=True)
        ]
        lower = [v - lo for v, (lo, _) in zip(values, cis, strict=True)]
        upper = [hi - v for v, (_, hi) in zip(values, cis, strict=True)]
        ax.bar(range(len(arms)), values, yerr=[lower, upper], capsize=4, color="tab:green")
        ax.set_xticks(range(len(arms)), arms, rotation=20, ha="right")
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def loss_curves_plot(result: dict[str, Any], path: Path) -> None:
    """Training and validation loss per arm against the step, the validation MRR of
    positives (dashed, right axis) that picks the kept step (dotted)."""
    arms = [(a, r["training"]) for a, r in result["arms"].items() if r.get("training")]
    if not arms:
        return
    fig, axes = plt.subplots(1, len(arms), figsize=(3.2 * len(arms), 3.2), squeeze=False)
    for ax, (arm, training) in zip(axes[0], arms, strict=True):
        for key, label in (("loss_curve", "train"), ("validation_curve", "validation")):
            points = training.get(key) or []
            if points:
                steps, losses = zip(*points, strict=True)
                ax.plot(steps, losses, label=label)
        if training.get("validation_mrr"):
            steps, mrr = zip(*training["validation_mrr"], strict=True)
            twin = ax.twinx()
            twin.plot(steps, mrr, color="tab:green", linestyle="--", label="validation MRR")
            twin.tick_params(labelsize=7)
        if training.get("best_step") is not None:
            ax.axvline(training["best_step"], color="grey", linestyle=":", label="kept")
        ax.set_title(arm, fontsize=9)
        ax.set_xlabel("step")
    axes[0][0].set_ylabel("loss (Eq. 1)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_backtest(out_dir: Path, result: dict[str, Any]) -> None:
    _write_json(out_dir / "backtest.json", result)
    (out_dir / "backtest.md").write_text(backtest_markdown(result))
    backtest_plot(result, out_dir / "backtest.png")
    loss_curves_plot(result, out_dir / "backtest_loss.png")
