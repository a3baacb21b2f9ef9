"""deploy/: the compose file, Kubernetes manifests and image, validated without a cluster.

The compose file against the compose-spec schema (check-jsonschema's vendored copy),
the manifests against Kubernetes' OpenAPI schemas (kubernetes-validate, offline), every
role's command line against recoil's own CLI parser, and the wiring between them
(ports, scrape jobs, mounted rule and dashboard paths) against monitoring/.
"""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from monitoring import kubernetes, rules
from monitoring.scrape import JOBS
from recoil import cli

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
ROLES = ("worker", "learn", "serve", "simulate")
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
CRD_KINDS = {"ServiceMonitor", "PrometheusRule", "Kustomization"}


def tool(name: str) -> str:
    """A dev tool installed beside the interpreter running the tests (pyproject's dev extra)."""
    path = Path(sys.executable).parent / name
    assert path.exists(), f"{name} is missing: pip install -e '.[dev]'"
    return str(path)


def parse_role(argv: list[str]) -> None:
    """Parse a role's command with recoil's CLI; fail with argparse's message."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            cli.build_parser().parse_args(argv)
        except SystemExit as exc:
            raise AssertionError(f"recoil {' '.join(argv)}:\n{err.getvalue()}") from exc


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def manifests(directory: Path) -> list[tuple[Path, dict[str, Any]]]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    found = []
    for resource in kustomization["resources"]:
        path = directory / resource
        assert path.is_file(), f"{directory.name}/kustomization.yaml lists missing {resource}"
        found += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


ALL_K8S = (
    manifests(K8S)
    + manifests(K8S / "monitoring")
    + [(K8S / "secret.example.yaml", yaml.safe_load((K8S / "secret.example.yaml").read_text()))]
)


# --- compose -----------------------------------------------------------------------------


def test_compose_validates_against_the_compose_spec() -> None:
    done = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
         str(DEPLOY / "compose.yaml")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_schema_check_can_fail(tmp_path: Path) -> None:
    broken = compose()
    broken["services"]["kafka"]["restart"] = ["always"]  # must be a string
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(broken))
    done = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1 and "restart" in done.stdout


def test_compose_runs_kafka_in_kraft_mode_from_the_official_image() -> None:
    kafka = compose()["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    assert "healthcheck" in kafka


def test_compose_roles_parse_and_match_the_scrape_config() -> None:
    services = compose()["services"]
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets: dict[str, str] = {}
    for job in scrape["scrape_configs"]:
        if "static_configs" in job:
            targets[job["job_name"]] = job["static_configs"][0]["targets"][0]
        else:
            sd = job["dns_sd_configs"][0]
            targets[job["job_name"]] = f"{sd['names'][0]}:{sd['port']}"
    assert set(targets) == set(JOBS.values())
    by_role = {}
    for name, service in services.items():
        if service.get("image", "").startswith("${RECOIL_IMAGE"):
            command = service["command"]
            parse_role(command)
            by_role[command[0]] = (name, service)
            assert "healthcheck" in service, name
            assert service["environment"]["RECOIL_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert set(by_role) == set(ROLES)
    for job, target in targets.items():
        host, port = target.split(":")
        command = services[host]["command"]
        flag = "--port" if command[0] == "serve" else "--metrics-port"
        assert command[command.index(flag) + 1] == port, job
        if flag == "--metrics-port":
            assert command[command.index("--metrics-host") + 1] == "0.0.0.0", job


def test_compose_publishes_only_on_loopback() -> None:
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_compose_mounts_monitoring_where_prometheus_and_grafana_look() -> None:
    services = compose()["services"]
    prometheus_mounts = dict(v.split(":")[:2] for v in services["prometheus"]["volumes"])
    assert prometheus_mounts["../monitoring/rules"] == "/etc/prometheus/rules"
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert scrape["rule_files"] == [
        f"/etc/prometheus/rules/{rules.RECORDING_FILE.name}",
        f"/etc/prometheus/rules/{rules.ALERTS_FILE.name}",
    ]
    grafana_mounts = dict(v.split(":")[:2] for v in services["grafana"]["volumes"])
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/recoil.yaml").read_text())[
        "providers"
    ][0]
    assert grafana_mounts["../monitoring/dashboards"] == provider["options"]["path"]
    assert grafana_mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    datasource = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yaml").read_text()
    )["datasources"][0]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"compose mounts missing {source}"


def test_compose_prometheus_config_passes_promtool() -> None:
    done = subprocess.run(
        ["promtool", "check", "config", "--syntax-only", str(DEPLOY / "prometheus/prometheus.yml")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


# --- image -------------------------------------------------------------------------------


def test_dockerfile_one_image_non_root_with_the_torch_build_arg() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^USER 10001:10001$", text, re.MULTILINE)
    assert 'ENTRYPOINT ["recoil"]' in text
    assert re.search(r"^ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu$", text, re.M)
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    for source in re.findall(r"^COPY (?!--from)(\S+)", text, re.MULTILINE):
        assert (REPO / source).exists(), f"COPY {source}: not in the repository"
        assert f"!{source.rstrip('/')}/" in ignore or f"!{source}" in ignore, source


# --- Kubernetes --------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_validate_against_kubernetes_schemas(version: str) -> None:
    validated = 0
    for _, doc in ALL_K8S:
        if doc["kind"] in CRD_KINDS:
            continue
        kubernetes_validate.validate(doc, version, strict=True)
        validated += 1
    assert validated == 14


def test_kubernetes_validation_can_fail() -> None:
    deployment = next(doc for _, doc in ALL_K8S if doc["kind"] == "Deployment")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[0], strict=True)


def kinds(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in ALL_K8S if doc["kind"] == kind}


def test_deployments_run_each_role_safely() -> None:
    deployments = kinds("Deployment")
    services = kinds("Service")
    assert set(deployments) == set(services) == set(JOBS.values())
    roles = {}
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]
        container = pod["spec"]["containers"][0]
        parse_role(container["args"])
        roles[container["args"][0]] = deployment
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert {"readinessProbe", "livenessProbe"} <= set(container), name
        # The pod's scrape annotation and the Service's metrics port name the same port.
        port = int(pod["metadata"]["annotations"]["prometheus.io/port"])
        args = container["args"]
        flag = "--port=" if args[0] == "serve" else "--metrics-port="
        assert f"{flag}{port}" in args, name
        if flag == "--metrics-port=":
            assert "--metrics-host=0.0.0.0" in args, name
        service_ports = {p["port"] for p in services[name]["spec"]["ports"]}
        assert port in service_ports, name
        assert services[name]["spec"]["selector"] == pod["metadata"]["labels"]
        if args[0] != "serve":
            refs = [e.get("configMapRef", {}).get("name") for e in container["envFrom"]]
            assert "recoil-kafka" in refs, name
    assert set(roles) == set(ROLES)
    learner = roles["learn"]["spec"]
    assert learner["replicas"] == 1 and learner["strategy"]["type"] == "Recreate"
    serving = roles["serve"]["spec"]["template"]["spec"]["containers"][0]
    assert serving["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert serving["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_worker_autoscaling_stops_at_the_partition_count() -> None:
    hpa = kinds("HorizontalPodAutoscaler")["recoil-stream"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "recoil-stream"
    args = kinds("Deployment")["recoil-stream"]["spec"]["template"]["spec"]["containers"][0]
    partitions = int(next(a for a in args["args"] if a.startswith("--partitions=")).split("=")[1])
    assert hpa["spec"]["maxReplicas"] == partitions


def test_kafka_settings_come_from_config_and_optional_secrets() -> None:
    config = kinds("ConfigMap")["recoil-kafka"]["data"]
    assert set(config) == {"RECOIL_BOOTSTRAP_SERVERS", "RECOIL_KAFKA_SECURITY_PROTOCOL"}
    secret = yaml.safe_load((K8S / "secret.example.yaml").read_text())
    assert all(key.startswith("RECOIL_KAFKA_SASL_") for key in secret["stringData"])
    assert (
        "secret.example.yaml" not in (K8S / "kustomization.yaml").read_text().split("resources:")[1]
    )


def test_service_monitor_scrapes_every_role_under_its_job_name() -> None:
    monitor = kinds("ServiceMonitor")["recoil"]
    ports = {e["port"] for e in monitor["spec"]["endpoints"]}
    selector = monitor["spec"]["selector"]["matchLabels"]
    for name, service in kinds("Service").items():
        assert selector.items() <= service["metadata"]["labels"].items(), name
        assert ports & {p["name"] for p in service["spec"]["ports"]}, f"{name} not scraped"


def test_generated_operator_manifests_are_committed() -> None:
    assert kubernetes.RULE_FILE.read_text() == kubernetes.render(kubernetes.prometheus_rule())
    assert kubernetes.DASHBOARD_FILE.read_text() == kubernetes.render(
        kubernetes.dashboards_configmap()
    ), "run: python -m monitoring.kubernetes"
    groups = kubernetes.prometheus_rule()["spec"]["groups"]
    recording = yaml.safe_load(rules.RECORDING_FILE.read_text())["groups"]
    alerts = yaml.safe_load(rules.ALERTS_FILE.read_text())["groups"]
    assert groups == recording + alerts
