"""deploy/compose/compose.yaml: the compose specification's schema, and what it wires together.

There is no Docker engine on the project's machines, so the file is never started here. What
is checked instead: the schema (``check-jsonschema --builtin-schema vendor.compose-spec``,
offline: the schema is vendored in check-jsonschema), that every file it mounts or builds from
exists in the repository, that its secrets stay out of git, that the gateway reaches all three
NATS nodes, and that Prometheus scrapes the jobs of deploy/prometheus/prometheus.yml (whose
names alerts.yml reads) at the compose services' addresses.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from .manifests import COMPOSE_FILE, DEPLOY, ROOT, config_value

COMPOSE_DIR = COMPOSE_FILE.parent
# compose.yaml and its TLS override (`-f compose.yaml -f compose.tls.yaml`).
COMPOSE_FILES = [COMPOSE_FILE, COMPOSE_DIR / "compose.tls.yaml"]
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"


def _compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data


def _schema_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _bind_mounts(service: dict[str, Any]) -> dict[str, str]:
    """The service's bind mounts: container path -> host path (relative to compose.yaml)."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts[target] = source
    return mounts


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=[p.name for p in COMPOSE_FILES])
def test_the_compose_schema_accepts_it(path: Path) -> None:
    result = _schema_check(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_refuses_a_mistake(tmp_path: Path) -> None:
    broken = _compose()
    broken["services"]["gateway"]["healthcheck"]["intervall"] = "10s"
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(broken), encoding="utf-8")
    result = _schema_check(path)
    assert result.returncode != 0
    assert "intervall" in result.stdout + result.stderr


def test_every_file_it_mounts_or_builds_from_exists() -> None:
    mounted = {
        m
        for path in COMPOSE_FILES
        for s in _compose(path)["services"].values()
        for m in _bind_mounts(s).values()
    }
    assert mounted == {
        "../nats/nats.conf",
        "../nats/nats-tls.conf",
        "./secrets/nats-tls",
        "./prometheus.yml",
        "../prometheus/alerts.yml",
        "../grafana/provisioning",
        "../grafana/aclbus.json",
    }
    for source in mounted:
        # secrets/ is made by hand (the next test); everything else is in the repository.
        if not source.startswith("./secrets/"):
            assert (COMPOSE_DIR / source).exists(), f"compose mounts {source}: not in the repo"
    services = _compose()["services"]
    build = services["gateway"]["build"]
    assert (COMPOSE_DIR / build["context"] / build["dockerfile"]).is_file()


def test_its_secrets_are_made_by_hand_and_kept_out_of_git() -> None:
    secrets = {**_compose()["secrets"], **_compose(COMPOSE_FILES[1])["secrets"]}
    assert set(secrets) == {"gateway_tokens", "grafana_admin_password", "nats_ca"}
    ignored = (COMPOSE_DIR / ".gitignore").read_text(encoding="utf-8").split()
    assert "secrets/" in ignored
    for secret in secrets.values():
        assert secret["file"].startswith("./secrets/")
    tracked = subprocess.run(
        ["git", "ls-files", str(COMPOSE_DIR / "secrets")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    assert tracked.stdout == ""
    gateway = _compose()["services"]["gateway"]
    assert "gateway_tokens" in gateway["secrets"]
    assert gateway["environment"]["ACLBUS_GATEWAY__TOKENS_FILE"] == "/run/secrets/gateway_tokens"


def test_three_nats_nodes_with_their_own_names_and_volumes() -> None:
    services = _compose()["services"]
    nodes = {n: s for n, s in services.items() if "/etc/nats/nats.conf" in _bind_mounts(s)}
    assert sorted(nodes) == ["nats-1", "nats-2", "nats-3"]
    for name, node in nodes.items():
        assert node["environment"]["NATS_SERVER_NAME"] == name
        assert _bind_mounts(node)["/etc/nats/nats.conf"] == "../nats/nats.conf"
        assert f"{name}-data:/data" in node["volumes"]
        # A stop is a lame duck (SIGTERM would stop the server at once), and waits it out
        # (30 s + 10 s grace in nats.conf).
        assert node["stop_signal"] == "SIGUSR2"
        assert node["stop_grace_period"] == "60s"
        # Where the config writes: its pid file (the server does not start without it) and
        # the JetStream store, on the node's volume.
        conf = (COMPOSE_DIR / _bind_mounts(node)["/etc/nats/nats.conf"]).read_text("utf-8")
        assert config_value(conf, "pid_file").rsplit("/", 1)[0] in node["tmpfs"]
        assert config_value(conf, "store_dir").startswith("/data/")
        assert "js-enabled-only=true" in " ".join(node["healthcheck"]["test"])
    servers = services["gateway"]["environment"]["ACLBUS_NATS__SERVERS"].split(",")
    assert servers == [f"nats://{name}:4222" for name in sorted(nodes)]


def test_the_gateway_is_checked_on_its_readiness() -> None:
    gateway = _compose()["services"]["gateway"]
    assert "/health/ready" in " ".join(gateway["healthcheck"]["test"])
    assert gateway["environment"]["ACLBUS_GATEWAY__PORT"] == "8000"
    assert "127.0.0.1:8000:8000" in gateway["ports"]


def test_prometheus_scrapes_the_jobs_of_deploy_prometheus_at_compose_addresses() -> None:
    services = _compose()["services"]
    mounts = _bind_mounts(services["prometheus"])
    config_path = COMPOSE_DIR / mounts["/etc/prometheus/prometheus.yml"]
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    example = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text("utf-8"))
    example_jobs = {job["job_name"]: job for job in example["scrape_configs"]}
    # Every rule file it loads is mounted beside it, and is deploy/prometheus's own.
    for rule_file in config["rule_files"]:
        source = mounts[f"/etc/prometheus/{rule_file}"]
        assert (COMPOSE_DIR / source).resolve() == (DEPLOY / "prometheus" / rule_file)
    ports = {"gateway": services["gateway"]["environment"]["ACLBUS_GATEWAY__PORT"]}
    jobs = config["scrape_configs"]
    assert [job["job_name"] for job in jobs] == ["aclbus-gateway"]
    for job in jobs:
        # alerts.yml's node alerts read up{job=~"aclbus.*"}.
        assert job["job_name"].startswith("aclbus")
        assert job["job_name"] in example_jobs
        assert job.get("metrics_path") == example_jobs[job["job_name"]].get("metrics_path")
        for target in (t for sc in job["static_configs"] for t in sc["targets"]):
            host, port = target.split(":")
            assert host in services, f"{target}: no such compose service"
            assert port == ports[host]
    # Grafana's data source is this Prometheus.
    datasources = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
    (source,) = yaml.safe_load(datasources.read_text(encoding="utf-8"))["datasources"]
    assert source["url"] == "http://prometheus:9090"
    assert "127.0.0.1:9090:9090" in services["prometheus"]["ports"]


def test_promtool_accepts_its_prometheus_config(promtool: Path, tmp_path: Path) -> None:
    shutil.copy(COMPOSE_DIR / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copy(DEPLOY / "prometheus" / "alerts.yml", tmp_path / "alerts.yml")
    result = subprocess.run(
        [str(promtool), "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_loads_the_dashboard_it_mounts() -> None:
    grafana = _compose()["services"]["grafana"]
    mounts = _bind_mounts(grafana)
    assert (COMPOSE_DIR / mounts["/etc/grafana/provisioning"]).resolve() == (
        DEPLOY / "grafana" / "provisioning"
    )
    provider_file = DEPLOY / "grafana" / "provisioning" / "dashboards" / "aclbus.yml"
    (provider,) = yaml.safe_load(provider_file.read_text(encoding="utf-8"))["providers"]
    folder = provider["options"]["path"]
    dashboards = [source for target, source in mounts.items() if target.startswith(f"{folder}/")]
    assert [(COMPOSE_DIR / d).resolve() for d in dashboards] == [DEPLOY / "grafana" / "aclbus.json"]
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"].startswith("/run/secrets/")


def test_the_tls_override_puts_every_node_and_the_gateway_on_tls() -> None:
    base = _compose()["services"]
    override = _compose(COMPOSE_FILES[1])["services"]
    nodes = sorted(n for n in override if n.startswith("nats-"))
    assert nodes == sorted(n for n in base if n.startswith("nats-"))
    for name in nodes:
        mounts = _bind_mounts(override[name])
        assert mounts["/etc/nats/nats.conf"] == "../nats/nats-tls.conf"
        # nats-tls.conf reads its files from this folder (tests/deploy/manifests.TLS_DIR).
        assert mounts["/etc/nats/tls"] == "./secrets/nats-tls"
    env = override["gateway"]["environment"]
    assert env["ACLBUS_NATS__SERVERS"].split(",") == [f"tls://{n}:4222" for n in nodes]
    assert env["ACLBUS_TLS__CA_FILE"] == "/run/secrets/nats_ca"
    # The override's list replaces compose.yaml's: the tokens must stay in it.
    assert set(override["gateway"]["secrets"]) == {"gateway_tokens", "nats_ca"}


@pytest.mark.parametrize("service", ["gateway", "prometheus", "grafana", "nats-1"])
def test_published_ports_stay_on_loopback(service: str) -> None:
    for port in _compose()["services"][service].get("ports", []):
        assert port.startswith("127.0.0.1:"), f"{service} publishes {port} beyond the host"
