"""A server's INFO, read before connecting: does it speak TLS?

nats-py upgrades a connection to TLS only when the server's INFO says ``tls_required``; to a
server that does not, it connects in plain text even with a TLS context or a ``tls://`` URL,
and sends its CONNECT, credentials included, in the clear. A client that wants TLS therefore
reads each configured server's INFO first (a TCP connection that sends nothing) and refuses a
server that does not require TLS, before anything is sent to it. With ``handshake_first`` no
INFO comes first: the TLS handshake itself fails against a server that does not speak TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any
from urllib.parse import urlparse

__all__ = ["DEFAULT_PORT", "host_port", "read_info"]

DEFAULT_PORT = 4222
"""nats-server's client port, when a URL gives none."""

_MAX_INFO = 64 * 1024  # an INFO line is a few hundred bytes; more is no nats-server


def host_port(url: str) -> tuple[str, int]:
    """The host and port of a server URL (``nats://u:p@host:4222`` gives ``("host", 4222)``)."""
    parsed = urlparse(url if "://" in url else f"nats://{url}")
    return parsed.hostname or "127.0.0.1", parsed.port or DEFAULT_PORT


async def read_info(url: str, timeout: float) -> dict[str, Any] | None:
    """The INFO the server at ``url`` sends first; None if it cannot be read in ``timeout``.

    None (no server there, or no INFO) leaves the verdict to the connection itself, which
    reports an unreachable server in its own words.
    """
    host, port = host_port(url)
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port, limit=_MAX_INFO)
            line = await reader.readline()
    except (OSError, TimeoutError, ValueError, asyncio.LimitOverrunError):
        return None
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
    op, _, payload = line.partition(b" ")
    if op.upper() != b"INFO":
        return None
    try:
        info = json.loads(payload)
    except ValueError:
        return None
    return info if isinstance(info, dict) else None
