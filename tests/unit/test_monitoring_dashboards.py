"""Grafana dashboards: the committed JSON is the generated one, and it is provisionable."""

from __future__ import annotations

import json

import pytest

from monitoring import dashboards
from monitoring.dashboards import DASHBOARDS, Dashboard


def test_committed_json_equals_generated() -> None:
    committed = {p.name for p in dashboards.DASHBOARD_DIR.glob("*.json")}
    assert committed == {d.file_name for d in DASHBOARDS}
    for board in DASHBOARDS:
        path = dashboards.DASHBOARD_DIR / board.file_name
        assert path.read_text() == dashboards.render(board), "run: python -m monitoring.dashboards"


def test_the_four_dashboards_exist() -> None:
    assert [d.uid for d in DASHBOARDS] == [
        "recoil-overview",
        "recoil-responsiveness",
        "recoil-pipeline",
        "recoil-learner",
    ]


@pytest.mark.parametrize("board", DASHBOARDS, ids=lambda d: d.uid)
def test_dashboard_is_provisionable(board: Dashboard) -> None:
    model = json.loads(dashboards.render(board))
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert "id" not in model, "provisioned dashboards get their id from Grafana"
    titles = [p["title"] for p in model["panels"]]
    assert len(titles) == len(set(titles))
    cells: set[tuple[int, int]] = set()
    for panel in model["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"] and panel["description"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            if "$arm" in target["expr"]:
                assert "arm" in variables, f"{panel['title']} uses $arm without the variable"
        grid = panel["gridPos"]
        x, y, w, h = grid["x"], grid["y"], grid["w"], grid["h"]
        assert x >= 0 and x + w <= 24
        mine = {(x + dx, y + dy) for dx in range(w) for dy in range(h)}
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine


def test_responsiveness_dashboard_shows_intervals_per_version_and_arm() -> None:
    model = dashboards.to_json(dashboards.RESPONSIVENESS)
    by_title = {p["title"]: p for p in model["panels"]}
    for similarity in ("Cluster", "Creator"):
        panel = by_title[f"{similarity} responsiveness by model version"]
        exprs = [t["expr"] for t in panel["targets"]]
        assert exprs[0].startswith("recoil_responsiveness_ratio{")
        assert exprs[1].startswith("recoil_responsiveness_ci_lower_ratio{")
        assert exprs[2].startswith("recoil_responsiveness_ci_upper_ratio{")
        assert all('arm=~"$arm"' in e for e in exprs)
        assert panel["targets"][0]["legendFormat"] == "{{arm}} v{{model_version}}"
        dashed = {o["matcher"]["options"] for o in panel["fieldConfig"]["overrides"]}
        assert dashed == {"B", "C"}
    assert "Dislike rate" in by_title and "Repeated dislikes of the same creator" in by_title


def test_instantiate_substitutes_grafana_variables() -> None:
    expr = 'sum by (arm) (rate(recoil_sim_impressions_total{arm=~"$arm"}[$__rate_interval]))'
    assert dashboards.instantiate(expr, "2m") == (
        'sum by (arm) (rate(recoil_sim_impressions_total{arm=~".*"}[2m]))'
    )
