"""deploy/k8s/: every manifest valid for Kubernetes 1.35 (strict), and wired as documented.

kubernetes-validate ships the API's JSON schemas, so this runs offline; strict mode refuses a
field the API does not have. Beyond the schema: the NATS StatefulSet's lame duck, probes, TLS
and volumes agree with its ConfigMap's nats.conf, and the gateway's with its settings.
"""

from __future__ import annotations

import re
from typing import Any

import kubernetes_validate
import pytest

from .manifests import ROOT, config_value, k8s_documents, k8s_resource, seconds

# The version stated in docs/deployment.md; kubernetes-validate 1.37 has schemas for it.
KUBERNETES_VERSION = "1.35.0"
DOCUMENTS = list(k8s_documents())


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = container
    return result


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def _mounts(workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Mount path -> the pod volume (or volume claim template) mounted there."""
    spec = workload["spec"]
    volumes = {v["name"]: v for v in spec["template"]["spec"].get("volumes", [])}
    for claim in spec.get("volumeClaimTemplates", []):
        volumes[claim["metadata"]["name"]] = {"claim": claim}
    return {m["mountPath"]: volumes[m["name"]] for m in _container(workload)["volumeMounts"]}


def test_the_manifests_are_found() -> None:
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for _, d in DOCUMENTS)
    assert kinds == [
        "ConfigMap/nats-config",
        "Deployment/aclbus-gateway",
        "PodDisruptionBudget/aclbus-gateway",
        "PodDisruptionBudget/nats",
        "Service/aclbus-gateway",
        "Service/nats",
        "Service/nats-headless",
        "StatefulSet/nats",
    ]


@pytest.mark.parametrize(
    "doc", [d for _, d in DOCUMENTS], ids=[f"{p.name}:{d['kind']}" for p, d in DOCUMENTS]
)
def test_kubernetes_validate_accepts_it(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_strict_validation_refuses_an_unknown_field() -> None:
    workload = k8s_resource("StatefulSet", "nats")
    broken = {**workload, "spec": {**workload["spec"], "maxUnavailable": 1}}
    with pytest.raises(kubernetes_validate.ValidationError, match="maxUnavailable"):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_nats_is_three_pods_behind_a_headless_service_and_a_pdb() -> None:
    workload = k8s_resource("StatefulSet", "nats")
    labels = workload["spec"]["template"]["metadata"]["labels"]
    assert workload["spec"]["replicas"] == 3
    headless = k8s_resource("Service", workload["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    client = k8s_resource("Service", "nats")
    budget = k8s_resource("PodDisruptionBudget", "nats")
    assert budget["spec"]["maxUnavailable"] == 1
    for selector in (
        headless["spec"]["selector"],
        client["spec"]["selector"],
        budget["spec"]["selector"]["matchLabels"],
        workload["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= labels.items()
    # The routes name every pod under the headless Service.
    conf = k8s_resource("ConfigMap", "nats-config")["data"]["nats.conf"]
    for ordinal in range(3):
        assert f"nats-route://nats-{ordinal}.{headless['metadata']['name']}:6222" in conf


def test_nats_drains_in_lame_duck_before_it_is_stopped() -> None:
    workload = k8s_resource("StatefulSet", "nats")
    conf = k8s_resource("ConfigMap", "nats-config")["data"]["nats.conf"]
    lame_duck = seconds(config_value(conf, "lame_duck_duration")) + seconds(
        config_value(conf, "lame_duck_grace_period")
    )
    grace = workload["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= lame_duck + 10
    pre_stop = " ".join(_container(workload)["lifecycle"]["preStop"]["exec"]["command"])
    pid_file = config_value(conf, "pid_file")
    assert f"nats-server --signal ldm={pid_file}" in pre_stop
    # The pid file's folder is writable (an emptyDir) under a read-only root.
    mounts = _mounts(workload)
    assert "emptyDir" in mounts[pid_file.rsplit("/", 1)[0]]
    assert _container(workload)["securityContext"]["readOnlyRootFilesystem"] is True


def test_nats_probes_are_jetstream_aware_on_the_monitor_port() -> None:
    workload = k8s_resource("StatefulSet", "nats")
    container = _container(workload)
    conf = k8s_resource("ConfigMap", "nats-config")["data"]["nats.conf"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["monitor"] == int(config_value(conf, "http_port"))
    assert ports["client"] == int(config_value(conf, "port"))
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {
            "path": "/healthz?js-enabled-only=true",
            "port": "monitor",
        }
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"


def test_nats_reads_its_config_tls_and_store_from_the_volumes() -> None:
    workload = k8s_resource("StatefulSet", "nats")
    conf = k8s_resource("ConfigMap", "nats-config")["data"]["nats.conf"]
    container = _container(workload)
    mounts = _mounts(workload)
    config_arg = container["args"][container["args"].index("--config") + 1]
    folder, key = config_arg.rsplit("/", 1)
    assert mounts[folder]["configMap"]["name"] == "nats-config"
    assert key in k8s_resource("ConfigMap", "nats-config")["data"]
    for name in ("cert_file", "key_file", "ca_file"):
        assert mounts[config_value(conf, name).rsplit("/", 1)[0]]["secret"]["secretName"] == (
            "nats-tls"
        )
    store = config_value(conf, "store_dir")
    claim = mounts["/data"]["claim"]
    assert store.startswith("/data/")
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    # The server's name is the pod's: the config reads it from the environment.
    assert config_value(conf, "server_name") == "$SERVER_NAME"
    assert _env(container)["SERVER_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_the_gateway_deployment_is_probed_and_not_root() -> None:
    deployment = k8s_resource("Deployment", "aclbus-gateway")
    container = _container(deployment)
    pod = deployment["spec"]["template"]["spec"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}
    assert "memory" in container["resources"]["limits"]
    env = _env(container)
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "http": int(env["ACLBUS_GATEWAY__PORT"])
    }
    service = k8s_resource("Service", "aclbus-gateway")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_the_gateway_reads_its_tokens_and_the_ca_from_secrets() -> None:
    deployment = k8s_resource("Deployment", "aclbus-gateway")
    env = _env(_container(deployment))
    mounts = _mounts(deployment)
    tokens_folder, _ = env["ACLBUS_GATEWAY__TOKENS_FILE"].rsplit("/", 1)
    assert mounts[tokens_folder]["secret"]["secretName"] == "aclbus-gateway-tokens"
    ca_folder, ca_name = env["ACLBUS_TLS__CA_FILE"].rsplit("/", 1)
    ca = mounts[ca_folder]["secret"]
    # Only the CA of the NATS Secret, not the servers' key.
    assert ca["secretName"] == "nats-tls"
    assert ca["items"] == [{"key": "ca.crt", "path": ca_name}]
    # No token in the manifest itself (ACLBUS_GATEWAY__TOKENS would hold them).
    assert "ACLBUS_GATEWAY__TOKENS" not in env
    servers = env["ACLBUS_NATS__SERVERS"].split(",")
    assert servers == [f"tls://nats-{n}.nats-headless:4222" for n in range(3)]
    assert env["ACLBUS_STREAMS__REPLICAS"] == "3"


def test_the_gateway_runs_as_the_images_user() -> None:
    pod = k8s_resource("Deployment", "aclbus-gateway")["spec"]["template"]["spec"]
    users = re.findall(r"(?m)^USER (\d+):(\d+)$", (ROOT / "Dockerfile").read_text("utf-8"))
    assert users, "the Dockerfile names its user by number (runAsNonRoot checks a number)"
    uid, gid = users[-1]
    assert pod["securityContext"]["runAsUser"] == int(uid)
    assert pod["securityContext"]["runAsGroup"] == int(gid)
