"""deploy/nats/nats.conf runs: three real nats-servers form a JetStream cluster, the gateway
configured as compose.yaml configures it is ready on them, and a lame duck drains a node.

Without a Docker engine, this is the nearest the tests get to ``docker compose up``: the same
config file, with what a container gives it (its own host name, ports and volumes) replaced by
loopback ports and temporary folders, and the lame duck's grace shortened to 1 s. Every
replacement must match once, so a change of the config that this test no longer covers fails
it. The lame duck is started with the StatefulSet's own ``preStop`` command and pid file.
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

from .manifests import COMPOSE_FILE, DEPLOY, config_value, k8s_resource

NODES = ("nats-1", "nats-2", "nats-3")
TIMEOUT = 30.0


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

    def config(self, template: str, routes: dict[str, int]) -> str:
        # Without its comments, which name the paths and ports too.
        text = "host: 127.0.0.1\n" + re.sub(r"(?m)^\s*#.*\n", "", template)
        text = _replace_once(text, "\nport: 4222\n", f"\nport: {self.client}\n")
        text = _replace_once(text, "\nhttp_port: 8222\n", f'\nhttp: "127.0.0.1:{self.monitor}"\n')
        text = _replace_once(text, "\n  port: 6222\n", f'\n  listen: "127.0.0.1:{self.route}"\n')
        for name, port in routes.items():
            text = _replace_once(
                text, f"nats-route://{name}:6222", f"nats-route://127.0.0.1:{port}"
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


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[dict[str, Node]]:
    """The three nodes of compose.yaml, started from deploy/nats/nats.conf."""
    binary = find_binary().path
    template = (DEPLOY / "nats" / "nats.conf").read_text(encoding="utf-8")
    nodes = {
        name: Node(name, _free_port(), _free_port(), _free_port(), tmp_path / name)
        for name in NODES
    }
    routes = {name: node.route for name, node in nodes.items()}
    env = {k: v for k, v in os.environ.items() if not k.startswith("NATS_")}
    try:
        for name, node in nodes.items():
            node.folder.mkdir()
            (node.folder / "nats.conf").write_text(node.config(template, routes))
            with (node.folder / "log").open("wb") as log:
                node.process = subprocess.Popen(
                    [str(binary), "-c", str(node.folder / "nats.conf")],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**env, "NATS_SERVER_NAME": name},
                )
        yield nodes
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


def _gateway_environment(nodes: dict[str, Node], tokens_file: Path) -> dict[str, str]:
    """compose.yaml's gateway environment, with the nodes' loopback addresses."""
    compose = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    given: dict[str, str] = dict(compose["services"]["gateway"]["environment"])
    servers = given["ACLBUS_NATS__SERVERS"]
    for name, node in nodes.items():
        servers = _replace_once(servers, f"nats://{name}:4222", f"nats://127.0.0.1:{node.client}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACLBUS_")}
    return {
        **env,
        **given,
        "ACLBUS_NATS__SERVERS": servers,
        "ACLBUS_GATEWAY__TOKENS_FILE": str(tokens_file),
        "ACLBUS_SUBJECT_PREFIX": f"deploy{uuid.uuid4().hex[:8]}",
        "ACLBUS_PLUGINS": "json,nats,metrics,gateway",
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


def test_the_compose_cluster_forms_serves_the_gateway_and_drains_a_lame_duck(
    cluster: dict[str, Node], tmp_path: Path
) -> None:
    nodes = cluster
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
    assert meta[0].get("leader") in NODES
    varz = nodes["nats-1"].get("/varz")[1]
    assert varz["max_payload"] == 1 << 20
    assert varz["server_name"] == "nats-1"

    tokens = tmp_path / "tokens.toml"
    token = "alice-token-0123456789abcdef"
    tokens.write_text(f'alice = "{token}"\n')
    port = _free_port()
    log = tmp_path / "gateway.log"
    aclbus = Path(sys.executable).with_name("aclbus")
    environment = _gateway_environment(nodes, tokens)
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
            body = nodes["nats-2"].get("/jsz?streams=true&config=true")[1] or {}
            return [
                stream["config"]["num_replicas"]
                for account in body.get("account_details", [])
                for stream in account.get("stream_detail", [])
                if stream["name"].startswith(prefix)
            ]

        _wait(lambda: bool(replicas()), "the gateway's streams", lambda: _logs(nodes, log))
        assert set(replicas()) == {3}
        assert len(_send(port, token, "bob")["acks"]) == 1

        # The StatefulSet's preStop, on nats-1's pid file: lame duck, then the server exits.
        pre_stop = k8s_resource("StatefulSet", "nats")["spec"]["template"]["spec"]
        command = pre_stop["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][-1]
        conf = k8s_resource("ConfigMap", "nats-config")["data"]["nats.conf"]
        signal_command = command.split(" && ")[0]
        signal_command = signal_command.replace(
            config_value(conf, "pid_file"), str(nodes["nats-1"].pid_file)
        )
        name, *arguments = signal_command.split()
        assert name == "nats-server"
        done = subprocess.run(
            [str(find_binary().path), *arguments],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        first = nodes["nats-1"].process
        assert first is not None
        first.wait(timeout=15)
        assert "Entering lame duck mode" in (nodes["nats-1"].folder / "log").read_text()
        # The other two keep the quorum; the gateway's bus moves to them and stays ready.
        _wait(
            is_ready,
            "the gateway ready after nats-1 left",
            lambda: _logs(nodes, log),
        )
        assert nodes["nats-2"].get("/healthz?js-enabled-only=true")[0] == 200
        # Two of three are a quorum: the R3 streams still take messages.
        assert len(_send(port, token, "bob")["acks"]) == 1
    finally:
        gateway.send_signal(signal.SIGTERM)
        try:
            gateway.wait(timeout=15)
        except subprocess.TimeoutExpired:
            gateway.kill()
            gateway.wait(timeout=10)
