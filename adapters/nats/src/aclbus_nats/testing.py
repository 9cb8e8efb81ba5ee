"""pytest fixtures that run real nats-servers on loopback, for aclbus users' own tests.

Enable them with ``pytest_plugins = ["aclbus_nats.testing"]`` in a top-level ``conftest.py``
(they are meant to become a ``pytest11`` plugin of ``aclbus-nats``)::

    async def test_publish(nats_url):
        nc = await nats.connect(nats_url)
        ack = await nc.jetstream().publish("orders.1", b"x")

Every fixture stops its servers when its scope ends, whether the tests passed or not, and
the servers die with the pytest process if it is killed. Each server has a temporary store.

``nats_server`` is shared by the whole session: tests that kill or freeze a server should
start their own `EmbeddedServer` (or use ``nats_cluster``, and `Cluster.restart` what they
killed so that the module's next tests get a whole cluster).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aclbus_nats.server import Cluster, EmbeddedServer

__all__ = ["nats_cluster", "nats_server", "nats_url"]


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
