"""A real Prometheus server (Debian's ``prometheus``) on loopback, for tests.

The test writes the scrape config; the server runs with its own TSDB in a
temporary directory and is queried over its HTTP API.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from monitoring.prometheus_api import api, is_ready
from recoil.broker.embedded import free_port


class PrometheusServer:
    """Start ``prometheus`` with a given config; query it; stop it."""

    def __init__(self, config_yaml: str, rule_files: list[Path] | None = None) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("Debian's prometheus is not installed: run scripts/setup.sh")
        self.binary = binary
        self.workdir = Path(tempfile.mkdtemp(prefix="recoil-prometheus-"))
        self.config_file = self.workdir / "prometheus.yml"
        self.config_file.write_text(config_yaml)
        self.port = free_port()
        self.log_file = self.workdir / "prometheus.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        log = self.log_file.open("wb")
        self._process = subprocess.Popen(
            [
                self.binary,
                f"--config.file={self.config_file}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"prometheus exited:\n{self.log_tail()}")
            if is_ready(self.url):
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"prometheus not ready after {timeout}s:\n{self.log_tail()}")

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path> and return its ``data`` (raises on an error status)."""
        return api(self.url, path, **params)

    def query(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.api("query", query=expr)["result"]
        return result

    def wait_for(self, expr: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Poll an instant query until it returns data; fail with the log if it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.query(expr)
            if result:
                return result
            time.sleep(0.5)
        raise AssertionError(f"no data for {expr!r} after {timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_file.exists():
            return "(no log)"
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        proc, self._process = self._process, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


def scrape_config(
    targets: list[str], interval: str = "1s", rule_files: list[Path] | None = None
) -> str:
    """A minimal prometheus.yml scraping ``targets`` (host:port) every ``interval``."""
    rules = "".join(f"  - {p}\n" for p in rule_files or [])
    return (
        f"global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\n"
        + (f"rule_files:\n{rules}" if rules else "")
        + "scrape_configs:\n  - job_name: recoil\n    static_configs:\n"
        + f"      - targets: {json.dumps(targets)}\n"
    )
