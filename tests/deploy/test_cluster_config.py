"""The NATS configs of deploy/ run: three real nats-servers form a JetStream cluster, the
gateway configured as deploy/ configures it is ready on them, and a lame duck drains a node.

Three layouts: compose (deploy/nats/nats.conf, the gateway's environment of compose.yaml), the
same with compose.tls.yaml (deploy/nats/nats-tls.conf, ``tls://`` with the CA), and Kubernetes
(the ConfigMap's nats.conf with TLS for clients and routes, the gateway's environment of its
Deployment, over ``tls://`` with the CA). Without a Docker engine or a cluster, this is the
nearest the tests get to starting them: the same config text, with what a container gives it
(its host name, ports, volumes, the TLS secret) replaced by loopback ports, temporary folders
and a test certificate, and the lame duck's grace shortened to 1 s. Every replacement must
match, so a change of the config that this test no longer covers fails it. A node is stopped as
its layout stops it: compose's ``stop_signal``, the StatefulSet's ``preStop`` command on the
pid file.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from aclbus_nats.server import find_binary

from .manifests import COMPOSE_FILE, DEPLOY, TLS_DIR, config_value, k8s_resource, write_tls_files

TIMEOUT = 30.0


@dataclass(frozen=True)
class Layout:
    """Where one deployment's NATS config and gateway environment come from.

    Attributes:
        name: compose, compose-tls or kubernetes.
        config: The nats.conf text.
        server_variable: The variable the config reads its server name from.
        nodes: The nodes' names (compose services, StatefulSet pods).
        route_host: A node's name -> the host its routes and clients use.
        scheme: The scheme of the gateway's server URLs.
        gateway: The gateway container's environment.
        drain: Stops a node the way the layout does: compose's ``stop_signal``, the
            StatefulSet's ``preStop`` command.
    """

    name: str
    config: str
    server_variable: str
    nodes: tuple[str, ...]
    route_host: Callable[[str], str]
    scheme: str
    gateway: dict[str, str]
    drain: Callable[[Node], None]


def _stop_signal(name: str) -> Callable[[Node], None]:
    """Compose's ``docker stop``: the service's ``stop_signal`` to the server's process."""

    def drain(node: Node) -> None:
        assert node.process is not None
        node.process.send_signal(signal.Signals[name])

    return drain


def _pre_stop(node: Node) -> None:
    """The StatefulSet's ``preStop`` command, on the node's pid file."""
    pod = k8s_resource("StatefulSet", "nats")["spec"]["template"]["spec"]
    command = pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][-1]
    conf = k8s_resource("ConfigMap", "nats-config")["data"]["nats.conf"]
    # Only the signal: the sleep after it keeps a real hook from returning early.
    signal_command = command.split(" && ")[0]
    name, *arguments = signal_command.replace(
        config_value(conf, "pid_file"), str(node.pid_file)
    ).split()
    assert name == "nats-server"
    done = subprocess.run(
        [str(find_binary().path), *arguments],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def _compose_layout(tls: bool) -> Layout:
    """compose.yaml, or compose.yaml with compose.tls.yaml over it."""
    compose = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    gateway = dict(compose["services"]["gateway"]["environment"])
    config = "nats.conf"
    if tls:
        override = yaml.safe_load((COMPOSE_FILE.parent / "compose.tls.yaml").read_text("utf-8"))
        gateway.update(override["services"]["gateway"]["environment"])
        config = "nats-tls.conf"
    return Layout(
        name="compose-tls" if tls else "compose",
        config=(DEPLOY / "nats" / config).read_text(encoding="utf-8"),
        server_variable="NATS_SERVER_NAME",
        nodes=("nats-1", "nats-2", "nats-3"),
        route_host=lambda node: node,
        scheme="tls" if tls else "nats",
        gateway=gateway,
        drain=_stop_signal(compose["services"]["nats-1"]["stop_signal"]),
    )


def _kubernetes_layout() -> Layout:
    (container,) = k8s_resource("Deployment", "aclbus-gateway")["spec"]["template"]["spec"][
        "containers"
    ]
    headless = k8s_resource("StatefulSet", "nats")["spec"]["serviceName"]
    return Layout(
        name="kubernetes",
        config=k8s_resource("ConfigMap", "nats-config")["data"]["nats.conf"],
        server_variable="SERVER_NAME",
        nodes=("nats-0", "nats-1", "nats-2"),
        route_host=lambda node: f"{node}.{headless}",
        scheme="tls",
        gateway={e["name"]: e["value"] for e in container["env"]},
        drain=_pre_stop,
    )


LAYOUTS = [_compose_layout(tls=False), _compose_layout(tls=True), _kubernetes_layout()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} is in nats.conf {text.count(old)} times, not once"
    return text.replace(old, new)


@dataclass
class Node:
    name: str
    client: int
    route: int
    monitor: int
    folder: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid_file(self) -> Path:
        return self.folder / "nats.pid"

    def config(self, layout: Layout, routes: dict[str, int], tls: Path) -> str:
        # Without its comments, which name the paths and ports too.
        text = "host: 127.0.0.1\n" + re.sub(r"(?m)^\s*#.*\n", "", layout.config)
        if layout.scheme == "tls":
            assert TLS_DIR in text
            text = text.replace(TLS_DIR, f"{tls}/")
        text = _replace_once(text, "\nport: 4222\n", f"\nport: {self.client}\n")
        text = _replace_once(text, "\nhttp_port: 8222\n", f'\nhttp: "127.0.0.1:{self.monitor}"\n')
        text = _replace_once(text, "\n  port: 6222\n", f'\n  listen: "127.0.0.1:{self.route}"\n')
        for name, port in routes.items():
            text = _replace_once(
                text,
                f"nats-route://{layout.route_host(name)}:6222",
                f"nats-route://127.0.0.1:{port}",
            )
        text = _replace_once(text, "/data/jetstream", str(self.folder / "jetstream"))
        text = _replace_once(text, "/var/run/nats/nats.pid", str(self.pid_file))
        # lame_duck_duration stays: 30 s is the server's minimum, and a server closes its
        # clients at most 1 s apart, so a few clients go in a few seconds after the grace.
        return _replace_once(text, 'lame_duck_grace_period: "10s"', 'lame_duck_grace_period: "1s"')

    def get(self, path: str) -> tuple[int, Any]:
        """GET a monitoring path: (status, JSON body); (0, None) while it does not answer."""
        url = f"http://127.0.0.1:{self.monitor}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2.0) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, None
        except (OSError, ValueError):
            return 0, None


def _wait(condition: Callable[[], bool], what: str, logs: Callable[[], str]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    pytest.fail(f"after {TIMEOUT:.0f} s, still not: {what}\n{logs()}")


@dataclass
class Cluster:
    layout: Layout
    nodes: dict[str, Node]
    tls: Path


@pytest.fixture(params=LAYOUTS, ids=[layout.name for layout in LAYOUTS])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    """The three nodes of a layout, started from its config."""
    layout: Layout = request.param
    binary = find_binary().path
    tls = write_tls_files(tmp_path / "tls")
    nodes = {
        name: Node(name, _free_port(), _free_port(), _free_port(), tmp_path / name)
        for name in layout.nodes
    }
    routes = {name: node.route for name, node in nodes.items()}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NATS_", "SERVER_"))}
    try:
        for name, node in nodes.items():
            node.folder.mkdir()
            (node.folder / "nats.conf").write_text(node.config(layout, routes, tls))
            with (node.folder / "log").open("wb") as log:
                node.process = subprocess.Popen(
                    [str(binary), "-c", str(node.folder / "nats.conf")],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**env, layout.server_variable: name},
                )
        yield Cluster(layout, nodes, tls)
    finally:
        for node in nodes.values():
            if node.process is not None and node.process.poll() is None:
                node.process.kill()
                node.process.wait(timeout=10)


def _logs(nodes: dict[str, Node], *extra: Path) -> str:
    paths = [n.folder / "log" for n in nodes.values() if (n.folder / "log").exists()]
    return "\n".join(
        f"--- {p} ---\n{p.read_text(errors='replace')[-2000:]}" for p in [*paths, *extra]
    )


def _gateway_environment(cluster: Cluster, tokens_file: Path) -> dict[str, str]:
    """The layout's gateway environment, with the nodes' loopback addresses and test files."""
    layout = cluster.layout
    given = dict(layout.gateway)
    servers = given["ACLBUS_NATS__SERVERS"]
    for name, node in cluster.nodes.items():
        servers = _replace_once(
            servers,
            f"{layout.scheme}://{layout.route_host(name)}:4222",
            f"{layout.scheme}://127.0.0.1:{node.client}",
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACLBUS_")}
    if layout.scheme == "tls":
        # The CA file of the secret's mount: the test CA.
        assert given["ACLBUS_TLS__CA_FILE"].startswith(("/run/secrets/", "/etc/aclbus/"))
        given["ACLBUS_TLS__CA_FILE"] = str(cluster.tls / "ca.crt")
    return {
        **env,
        **given,
        "ACLBUS_NATS__SERVERS": servers,
        "ACLBUS_GATEWAY__TOKENS_FILE": str(tokens_file),
        # The image loads every installed plugin, as here (no ACLBUS_PLUGINS).
        "ACLBUS_SUBJECT_PREFIX": f"deploy{uuid.uuid4().hex[:8]}",
    }


def _send(port: int, token: str, receiver: str) -> dict[str, Any]:
    """POST /communication/send through the gateway: its 200 answer (the PubAcks)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/communication/send",
        data=json.dumps(
            {"receiver_id": receiver, "performative": "inform", "payload": {"n": 1}}
        ).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10.0) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as error:
        pytest.fail(f"send answered {error.code}: {error.read().decode(errors='replace')}")


def test_the_cluster_forms_serves_the_gateway_and_drains_a_lame_duck(
    cluster: Cluster, tmp_path: Path
) -> None:
    nodes = cluster.nodes
    first_name, second_name, _ = cluster.layout.nodes
    # /healthz without js-enabled-only: JetStream is up and current on every node.
    _wait(
        lambda: all(n.get("/healthz")[0] == 200 for n in nodes.values()),
        "every node healthy",
        lambda: _logs(nodes),
    )
    jsz = [n.get("/jsz")[1] for n in nodes.values()]
    meta = [j["meta_cluster"] for j in jsz]
    assert {m["cluster_size"] for m in meta} == {3}
    assert len({m.get("leader") for m in meta}) == 1
    assert meta[0].get("leader") in cluster.layout.nodes
    varz = nodes[first_name].get("/varz")[1]
    assert varz["max_payload"] == 1 << 20
    assert varz["server_name"] == first_name
    assert varz.get("tls_required", False) is (cluster.layout.scheme == "tls")

    tokens = tmp_path / "tokens.toml"
    token = "alice-token-0123456789abcdef"
    tokens.write_text(f'alice = "{token}"\n')
    port = _free_port()
    log = tmp_path / "gateway.log"
    aclbus = Path(sys.executable).with_name("aclbus")
    environment = _gateway_environment(cluster, tokens)
    with log.open("wb") as output:
        gateway = subprocess.Popen(
            [str(aclbus), "serve", "--host", "127.0.0.1", "--port", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=environment,
            cwd=tmp_path,
        )
    try:
        ready = f"http://127.0.0.1:{port}/health/ready"

        def is_ready() -> bool:
            try:
                with urllib.request.urlopen(ready, timeout=3.0) as response:
                    return response.status == 200
            except OSError:
                return False

        _wait(is_ready, "the gateway ready on the cluster", lambda: _logs(nodes, log))
        # ACLBUS_STREAMS__REPLICAS=3 of compose.yaml: every stream the gateway made has 3.
        prefix = environment["ACLBUS_SUBJECT_PREFIX"].upper() + "_"

        def replicas() -> list[int]:
            body = nodes[second_name].get("/jsz?streams=true&config=true")[1] or {}
            return [
                stream["config"]["num_replicas"]
                for account in body.get("account_details", [])
                for stream in account.get("stream_detail", [])
                if stream["name"].startswith(prefix)
            ]

        _wait(lambda: bool(replicas()), "the gateway's streams", lambda: _logs(nodes, log))
        assert set(replicas()) == {3}
        assert len(_send(port, token, "bob")["acks"]) == 1

        # A stop of the first node as the layout does it: lame duck, then the server exits.
        cluster.layout.drain(nodes[first_name])
        first = nodes[first_name].process
        assert first is not None
        first.wait(timeout=15)
        assert "Entering lame duck mode" in (nodes[first_name].folder / "log").read_text()
        # The other two keep the quorum; the gateway's bus moves to them and stays ready.
        _wait(
            is_ready,
            "the gateway ready after the first node left",
            lambda: _logs(nodes, log),
        )
        assert nodes[second_name].get("/healthz?js-enabled-only=true")[0] == 200
        # Two of three are a quorum: the R3 streams still take messages.
        assert len(_send(port, token, "bob")["acks"]) == 1
    finally:
        gateway.send_signal(signal.SIGTERM)
        try:
            gateway.wait(timeout=15)
        except subprocess.TimeoutExpired:
            gateway.kill()
            gateway.wait(timeout=10)
