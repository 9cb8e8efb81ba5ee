"""Where the NATS columns run: the bench bus' server, and a stream of their own on it."""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass

import nats
from nats.aio.client import Client
from nats.js import api

from aclbus import Bus
from aclbus_nats.backend import NatsBackend

__all__ = ["BenchTarget"]


@dataclass(frozen=True, slots=True)
class BenchTarget:
    """The server and names a NATS column uses.

    Attributes:
        servers: The bench bus' server URLs (the embedded server's when none is configured).
        prefix: Subject prefix of this column (under the bench bus' prefix).
        stream: Name of the column's own stream, which captures ``prefix.>``.
        storage: The stream's storage, as the bus' streams have it.
    """

    servers: list[str]
    prefix: str
    stream: str
    storage: api.StorageType

    @classmethod
    def of(cls, bus: Bus, column: str) -> BenchTarget | None:
        """The target of ``column`` on ``bus``' server; None if the bus is not on NATS."""
        backend = bus.backend
        if not isinstance(backend, NatsBackend):
            return None
        servers = list(backend.nats_settings.servers) or (
            [backend.server.url] if backend.server is not None else []
        )
        token = secrets.token_hex(3)
        file = bus.settings.streams.storage == "file"
        return cls(
            servers=servers,
            prefix=f"{bus.settings.subject_prefix}.{column}{token}",
            stream=f"BENCH_{column.upper()}_{token}",
            storage=api.StorageType.FILE if file else api.StorageType.MEMORY,
        )

    async def connect(self) -> Client:
        """A plain nats-py connection to the server."""
        return await nats.connect(servers=self.servers, connect_timeout=5, max_reconnect_attempts=3)

    async def create_stream(self, nc: Client) -> None:
        """Make the column's stream."""
        await nc.jetstream().add_stream(
            name=self.stream, subjects=[f"{self.prefix}.>"], storage=self.storage
        )

    async def delete_stream(self, nc: Client) -> None:
        """Remove the column's stream (and its consumers)."""
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_stream(self.stream)
