"""The exposition of a registry, and a small HTTP server for processes without the gateway.

`exposition` is what any server (the gateway's ``/metrics``) returns; `MetricsServer` is
``prometheus_client``'s own threaded server on one registry, which the plugin starts on
``ACLBUS_METRICS__PORT`` when that is set.
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, start_http_server

__all__ = ["CONTENT_TYPE", "MetricsServer", "exposition"]

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
"""The ``Content-Type`` of `exposition`'s text: Prometheus text format 0.0.4, which is what
`generate_latest` writes (``CONTENT_TYPE_LATEST`` names 1.0.0 in this client)."""


def exposition(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition of everything in ``registry``, now."""
    return generate_latest(registry)


class MetricsServer:
    """An HTTP server answering ``GET /metrics`` (any path) with ``registry``'s exposition.

    Args:
        registry: What it serves.
        host: The address it listens on (loopback by default).
        port: The port; 0 picks a free one (see `address`).
    """

    def __init__(self, registry: CollectorRegistry, *, host: str = "127.0.0.1", port: int = 0):
        server, thread = start_http_server(port, addr=host, registry=registry)
        self._server: WSGIServer = server
        self._thread: threading.Thread = thread

    @property
    def address(self) -> tuple[str, int]:
        """The host and port it listens on."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def close(self) -> None:
        """Stop serving and release the port. Idempotent."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5.0)
