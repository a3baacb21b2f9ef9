"""recoil report without a server: durations, legends, rendering, and clear errors."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from monitoring import dashboards
from monitoring.report import (
    PanelData,
    PrometheusClient,
    Series,
    legend,
    parse_duration,
    render,
    write_report,
)
from recoil import cli
from recoil.broker.embedded import free_port


@pytest.mark.parametrize(
    ("text", "seconds"), [("15s", 15), ("1h", 3600), ("2.5m", 150), ("2d", 172800), ("30", 30)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1y", "-5m", "0s", "m"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration like 15s"):
        parse_duration(text)


def test_legend_follows_grafana_format() -> None:
    labels = {"__name__": "x", "arm": "no_signal", "model_version": "3", "instance": "h:1"}
    assert legend("{{arm}} v{{ model_version }}", labels) == "no_signal v3"
    assert legend("__auto", labels) == "arm=no_signal, model_version=3"
    assert legend("", {}) == "value"


def test_render_draws_lines_and_interval_bands(tmp_path: Path) -> None:
    times = np.arange(1_700_000_000, 1_700_000_600, 15, dtype=float)  # (40,)
    labels = {"arm": "feature_and_labels", "model_version": "2", "similarity": "cluster"}
    estimate = Series(labels | {"__name__": "recoil_responsiveness_ratio"}, times, -0.6 + 0 * times)
    lower = Series(labels, times, -0.7 + 0 * times)
    upper = Series(labels, times, -0.5 + 0 * times)
    panel = dashboards.RESPONSIVENESS.panels[0]
    data = PanelData(panel, [("feature_and_labels v2", estimate)], {})
    data.bands[estimate.key] = {"lower": lower, "upper": upper}
    empty = PanelData(dashboards.RESPONSIVENESS.panels[1], [], {})
    assert not data.empty and empty.empty
    path = tmp_path / "r.png"
    render("test", [data, empty], path, float(times[0]), float(times[-1]))
    image = matplotlib.image.imread(path)  # (H, W, 4)
    assert image.shape[:2] == (378, 1440)
    # The band: pixels of the line colour, lightened (alpha 0.15 over white).
    band = np.array([1 - 0.15 * (1 - c) for c in (0x1F / 255, 0x77 / 255, 0xB4 / 255)])
    close = np.abs(image[:, :, :3] - band).max(axis=2) < 0.02
    assert close.sum() > 10_000


def test_unreachable_prometheus_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    code = cli.main(["report", "--prometheus", url, "--out", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert f"recoil report: cannot reach Prometheus at {url}: " in err
    assert "Connection refused" in err and "pass --prometheus http://HOST:9090" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prometheus", "127.0.0.1:9090"], "is not a URL like http://127.0.0.1:9090"),
        (["--prometheus", "http://h:1", "--step", "5x"], "'5x' is not a duration"),
        (["--prometheus", "http://h:1", "--dashboard", "nope"], "unknown dashboard nope"),
        (["--prometheus", "http://h:1", "--range", "7d", "--step", "1s"], "raise --step"),
    ],
)
def test_bad_arguments_say_what_to_fix(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["report", "--out", str(tmp_path), *args]) == 2
    assert message in capsys.readouterr().err


def test_write_report_checks_points_before_connecting(tmp_path: Path) -> None:
    from monitoring.report import ReportError

    with pytest.raises(ReportError, match="604800 points per series"):
        write_report(PrometheusClient("http://127.0.0.1:1"), tmp_path, 7 * 86400, 1)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xff\xfe not text", "did not answer JSON"),
        (b'{"status": "success"}', "refused query_range"),
        (b'{"status": "success", "data": {"result": [{"metric": {}}]}}', "not a Prometheus"),
        (
            b'{"status": "success", "data": {"result": [{"values": "x", "metric": 1}]}}',
            "not a Prometheus",
        ),
        (b'{"status": "success", "data": {"result": [5]}}', "not a Prometheus"),
    ],
)
def test_a_server_that_is_not_prometheus_is_a_clear_error(body: bytes, message: str) -> None:
    """A 200 from another server (a proxy, another service on the port) was a KeyError,
    TypeError or UnicodeDecodeError traceback from ``recoil report``."""
    import http.server
    import threading

    from monitoring.report import PrometheusClient, ReportError

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = PrometheusClient(f"http://127.0.0.1:{server.server_address[1]}")
        with pytest.raises(ReportError, match=message):
            client.query_range("up", 0.0, 60.0, 15.0)
    finally:
        server.shutdown()
        server.server_close()
