"""A webhook receiver for the gateway's tests: a stdlib HTTP server in a process of its own.

``python webhook_receiver.py PORT LOG`` answers every POST with 200 after appending one JSON
line to LOG: the request's headers (lower-case names) and its body as text. The tests kill
it (SIGKILL) and start it again on the same port to see deliveries fail and resume.
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

__all__ = ["main"]


def main(port: int, log: Path) -> None:
    """Serve on 127.0.0.1:``port`` until killed, recording each POST to ``log``."""
    with log.open("a", encoding="utf-8") as out:

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                record = {
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body.decode(),
                }
                out.write(json.dumps(record) + "\n")
                out.flush()  # to the OS at once: a SIGKILL right after keeps the line
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return  # quiet: the log file is the record

        ThreadingHTTPServer.allow_reuse_address = True
        with ThreadingHTTPServer(("127.0.0.1", port), Handler) as server:
            server.serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]))
