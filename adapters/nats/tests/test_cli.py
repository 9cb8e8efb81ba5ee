"""The command line on the default backend: nats, with the embedded server (real processes)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from aclbus.bus import Bus
from aclbus.settings import Settings, StreamLimits
from aclbus_nats.backend import NatsBackend
from aclbus_nats.server import EmbeddedServer
from aclbus_nats.settings import NatsSettings
from aclbus_nats.testing import delete_streams


def _run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ACLBUS_")}
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-m", "aclbus.cli", *args],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_demo_runs_on_the_embedded_server_and_keeps_its_store(tmp_path: Path) -> None:
    data = tmp_path / "data"
    done = _run(["demo", "--agents", "2", "--messages", "5"], tmp_path, ACLBUS_DATA_DIR=str(data))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "aclbus demo on nats" in done.stdout
    for pattern in ("broadcast", "request-reply", "p2p work (pool)", "retry"):
        assert pattern in done.stdout
    assert "pool work split between workers: worker-1:" in done.stdout
    # the embedded server kept its JetStream store under the data dir
    assert any((data / "nats").rglob("ACLBUS_AGENT")), sorted(data.rglob("*"))[:20]


async def test_doctor_reports_the_consumer_headroom_of_a_namespace(
    tmp_path: Path, nats_server: EmbeddedServer
) -> None:
    """Four agents ran in the namespace: doctor counts their consumers against the limit."""
    prefix = "doc" + uuid.uuid4().hex[:10]
    limits = StreamLimits(max_bytes=1 << 20, storage="memory", max_consumers=20)
    settings = Settings(backend="nats", subject_prefix=prefix, streams=limits)
    bus = Bus(
        settings,
        backend=NatsBackend(settings, nats=NatsSettings(servers=[nats_server.url])),
        entry_points=False,
    )
    for i in range(4):
        bus.agent(f"a{i}")
    try:
        async with bus:
            pass  # the agents' durable consumers stay when the bus stops
        done = await asyncio.to_thread(
            _run,
            ["doctor"],
            tmp_path,
            ACLBUS_NATS__SERVERS=nats_server.url,
            ACLBUS_SUBJECT_PREFIX=prefix,
            ACLBUS_STREAMS__STORAGE="memory",
            ACLBUS_STREAMS__MAX_BYTES=str(1 << 20),
            ACLBUS_STREAMS__MAX_CONSUMERS="20",
        )
        assert done.returncode == 0, done.stdout + done.stderr
        consumers = json.loads(done.stdout)["consumers"]
        inbox = consumers["streams"][f"{prefix.upper()}_AGENT"]
        assert inbox == {"used": 4, "max": 20, "free": 16, "per_agent": 1, "agents": 16}
        broadcast = consumers["streams"][f"{prefix.upper()}_BROADCAST"]
        assert (broadcast["used"], broadcast["max"]) == (4, 20)
        assert consumers["agents_headroom"] == 16
    finally:
        await delete_streams(nats_server.url, prefix)


def test_doctor_reports_server_and_jetstream_with_secrets_masked(tmp_path: Path) -> None:
    done = _run(["doctor"], tmp_path, ACLBUS_CREDENTIALS="very-secret-value")
    assert done.returncode == 0, done.stdout + done.stderr
    facts = json.loads(done.stdout)
    assert facts["backend"] == "nats"
    server = facts["server"]
    major, minor = (int(x) for x in server["server_version"].split(".")[:2])
    assert (major, minor) >= (2, 11)
    assert server["embedded"] is True
    assert server["jetstream"]["streams"] >= 4
    assert "very-secret-value" not in done.stdout + done.stderr
