"""The webhook receiver of the end-to-end test: it refuses the messages that are to fail.

A real HTTP server on loopback (stdlib, in a thread of the test process) that the gateway
POSTs an agent's messages to: 204 for each, 500 for those whose payload says
``{"fail": true}``, so the gateway's webhook delivery fails and the bus dead-letters them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["Sink", "webhook_sink"]


class Sink:
    """What the receiver got: counts of messages taken and refused."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.taken = 0
        self.refused = 0


@contextmanager
def webhook_sink() -> Iterator[Sink]:
    """Run the receiver until the block ends; yields its `Sink` (``sink.url`` to register)."""
    lock = threading.Lock()
    sink: Sink

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            payload = body.get("payload")
            fail = isinstance(payload, dict) and bool(payload.get("fail"))
            with lock:
                if fail:
                    sink.refused += 1
                else:
                    sink.taken += 1
            self.send_response(500 if fail else 204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet: the test reports what matters

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    sink = Sink(f"http://127.0.0.1:{server.server_address[1]}/hook")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
