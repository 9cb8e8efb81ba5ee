"""What the webhook and event-stream tests share: a receiver process, a gateway on uvicorn.

`Receiver` runs ``webhook_receiver.py`` as a real process that can be SIGKILLed and started
again on its port; `served_gateway` serves `create_app` with real uvicorn in this process,
over a bus on the test's nats-server, so a test can stop it and start another (a restart).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from aclbus import Bus, Settings
from aclbus.settings import StreamLimits
from aclbus_gateway import GatewaySettings, create_app
from aclbus_nats.backend import NatsBackend
from aclbus_nats.settings import NatsSettings

__all__ = ["Receiver", "free_port", "nats_bus", "served_gateway", "wait_for"]

RECEIVER = Path(__file__).with_name("webhook_receiver.py")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_for(check: Any, *, timeout: float, what: str, every: float = 0.05) -> Any:
    """Poll ``check()`` (sync or async) until it returns something truthy, at most ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(every)


@dataclass
class Receiver:
    """A webhook receiver process on ``port``, recording to ``log``."""

    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Where it listens."""
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        """Start it and wait until it accepts connections (at most 10 s)."""
        self._spawn()

        def accepting() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return True
            except OSError:
                return False

        await wait_for(accepting, timeout=10, what="the webhook receiver to listen")

    def _spawn(self) -> None:
        command = [sys.executable, str(RECEIVER), str(self.port), str(self.log)]
        self.process = subprocess.Popen(command)

    def kill(self) -> None:
        """SIGKILL it (no goodbye: connections just break)."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def records(self) -> list[dict[str, Any]]:
        """What it got so far: one ``{"headers", "body"}`` per POST, in arrival order."""
        if not self.log.exists():
            return []
        lines = self.log.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]


def nats_settings(prefix: str, **overrides: Any) -> Settings:
    """Bus settings on their own subject prefix, with small in-memory streams."""
    return Settings(
        backend="nats",
        subject_prefix=prefix,
        streams=StreamLimits(max_bytes=8 << 20, storage="memory"),
        **overrides,
    )


def nats_bus(url: str, settings: Settings) -> Bus:
    """A bus (not started) on the nats-server at ``url``."""
    return Bus(settings, backend=NatsBackend(settings, nats=NatsSettings(servers=[url])))


@asynccontextmanager
async def served_gateway(bus: Bus, gateway: GatewaySettings) -> AsyncIterator[str]:
    """Serve the gateway over ``bus`` (started here, stopped after) with uvicorn.

    Yields:
        Its base URL, ``http://127.0.0.1:<port>``.
    """
    port = free_port()
    async with bus:
        app = create_app(bus.settings, gateway=gateway, bus=bus)
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        try:
            await wait_for(lambda: server.started or task.done(), timeout=10, what="uvicorn")
            if task.done():
                task.result()  # it failed to start: say why
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, timeout=15)
