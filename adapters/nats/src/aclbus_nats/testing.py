"""pytest fixtures that run real nats-servers on loopback, for aclbus users' own tests.

They load by themselves (``aclbus-nats`` registers this module as a ``pytest11`` plugin)::

    async def test_publish(nats_url):
        nc = await nats.connect(nats_url)
        ack = await nc.jetstream().publish("orders.1", b"x")

Every fixture stops its servers when its scope ends, whether the tests passed or not, and
the servers die with the pytest process if it is killed. Each server has a temporary store.

``nats_server`` is shared by the whole session: tests that kill or freeze a server should
start their own `EmbeddedServer` (or use ``nats_cluster``, and `Cluster.restart` what they
killed so that the module's next tests get a whole cluster).

`NatsConfig` runs the conformance kit (``aclbus.testing``) on the session's server, and serves
plugins' own tests the same way: ``class TestX(NatsConfig, XTestcase): pass``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar

import nats
import pytest
import pytest_asyncio

from aclbus.backend import Backend, Capabilities
from aclbus.settings import Settings, StreamLimits
from aclbus.testing import BackendConfig
from aclbus_nats.backend import NatsBackend
from aclbus_nats.server import Cluster, EmbeddedServer
from aclbus_nats.settings import NatsSettings

__all__ = ["NatsConfig", "delete_streams", "nats_cluster", "nats_server", "nats_url"]


@pytest.fixture(scope="session")
def nats_server() -> Iterator[EmbeddedServer]:
    """A nats-server with JetStream and a temporary store, shared by the test session.

    Yields:
        The running server.
    """
    with EmbeddedServer(server_name="aclbus-test") as server:
        yield server


@pytest.fixture(scope="session")
def nats_url(nats_server: EmbeddedServer) -> str:
    """The client URL of `nats_server`, ``nats://127.0.0.1:<port>``.

    Returns:
        The URL.
    """
    return nats_server.url


@pytest.fixture(scope="module")
def nats_cluster() -> Iterator[Cluster]:
    """A 3-node JetStream cluster on loopback, shared by the tests of one module.

    Yields:
        The running cluster, with a JetStream meta leader elected.
    """
    with Cluster(3, name="aclbus-test") as cluster:
        yield cluster


class NatsConfig(BackendConfig):
    """The conformance config of the NATS backend: a `NatsBackend` on `nats_server`.

    Each test's streams are small and in memory, and are deleted after the test (KV buckets
    of its namespace too), since streams reserve their ``max_bytes`` against the server.
    """

    name: ClassVar[str] = NatsBackend.name
    capabilities: ClassVar[Capabilities] = NatsBackend.capabilities
    _url: str = ""

    @pytest_asyncio.fixture(autouse=True)
    async def _on_server(self, nats_server: EmbeddedServer) -> AsyncIterator[None]:
        self._url = nats_server.url
        yield
        await delete_streams(self._url, self.namespace)

    def make_settings(self, **overrides: Any) -> Settings:
        """Small in-memory streams: each test provisions its own under its namespace."""
        overrides.setdefault("streams", StreamLimits(max_bytes=8 << 20, storage="memory"))
        return super().make_settings(**overrides)

    def make_backend(self) -> Backend:
        """A `NatsBackend` connected to the session's server."""
        return NatsBackend(self.make_settings(), nats=NatsSettings(servers=[self._url]))


async def delete_streams(url: str, namespace: str) -> None:
    """Delete every stream (KV buckets included) whose name holds ``namespace``, any case."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        for info in await js.streams_info():
            name = info.config.name or ""
            if namespace.upper() in name.upper():
                await js.delete_stream(name)
    finally:
        await nc.close()
