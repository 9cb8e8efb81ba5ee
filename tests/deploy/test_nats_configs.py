"""Every NATS config in deploy/ passes the real ``nats-server -t``, and agrees with aclbus.

The configs are deploy/nats/*.conf (compose) and the ``.conf`` keys of deploy/k8s's
ConfigMaps. A config with a mistake fails the same check (so the check can fail).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aclbus.settings import Settings
from aclbus_nats.server import find_binary

from .manifests import NatsConfig, config_value, nats_check, nats_configs, seconds

CONFIGS = nats_configs()


@pytest.fixture(scope="module")
def nats_binary() -> Path:
    return find_binary().path


def test_the_configs_are_found() -> None:
    names = {c.name for c in CONFIGS}
    assert {"deploy/nats/nats.conf", "deploy/nats/nats-tls.conf"} <= names
    assert "deploy/k8s/nats-config.yaml:nats.conf" in names


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_nats_server_accepts_it(config: NatsConfig, nats_binary: Path, tmp_path: Path) -> None:
    result = nats_check(nats_binary, config.text, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "is valid" in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("mistake", "error"),
    [
        ("cluster_name_typo: aclbus\n", "unknown field"),
        ("max_payload: 1MiB-ish\n", "not int64"),
        ("leafnodes { port: $LEAF_PORT }\n", "LEAF_PORT"),
    ],
)
def test_a_broken_config_fails_the_check(
    mistake: str, error: str, nats_binary: Path, tmp_path: Path
) -> None:
    result = nats_check(nats_binary, CONFIGS[0].text + mistake, tmp_path, unset=("LEAF_PORT",))
    assert result.returncode != 0
    assert error in result.stderr


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_it_holds_what_a_cluster_of_aclbus_needs(config: NatsConfig) -> None:
    text = config.text
    # The server's limit is aclbus' own (headers and body), neither larger nor smaller.
    assert int(config_value(text, "max_payload")) == Settings().max_message_bytes
    assert seconds(config_value(text, "lame_duck_duration")) >= 10
    assert seconds(config_value(text, "lame_duck_grace_period")) > 0
    assert config_value(text, "http_port") == "8222"
    assert config_value(text, "server_name").startswith("$")
    assert "jetstream {" in text
    assert "store_dir: /data/jetstream" in text
    assert text.count("nats-route://") == 3
    # The preStop / compose stop signals lame duck through the pid file.
    assert config_value(text, "pid_file") == "/var/run/nats/nats.pid"
