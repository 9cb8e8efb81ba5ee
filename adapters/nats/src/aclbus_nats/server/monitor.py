"""Asking a server's monitoring endpoint (``/healthz``, ``/jsz``) how it is doing."""

from __future__ import annotations

import http.client
import json
from typing import Any

from aclbus_nats.server.process import HOST

__all__ = ["JS_READY", "FULL_HEALTH", "get", "get_json"]

JS_READY = "/healthz?js-enabled-only=true"
"""The server runs and JetStream is on; says nothing about a cluster's meta leader."""

FULL_HEALTH = "/healthz"
"""JetStream is current with its meta leader, and every stream and consumer is current."""


def get(port: int, path: str, timeout: float = 1.0) -> tuple[int, str]:
    """GET a monitoring path on loopback.

    ``http.client`` rather than ``urllib``: urllib honours ``HTTP_PROXY``, and a proxy must
    never see a loopback health check.

    Args:
        port: The monitoring port.
        path: The path with its query string.
        timeout: Seconds for connecting and for the answer.

    Returns:
        The HTTP status and the body.

    Raises:
        OSError: No answer (not listening yet, or too slow).
    """
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    except http.client.HTTPException as exc:
        raise OSError(f"bad HTTP answer from {HOST}:{port}{path}: {exc!r}") from exc
    finally:
        conn.close()


def get_json(port: int, path: str, timeout: float = 1.0) -> dict[str, Any]:
    """GET a monitoring path and decode its JSON object.

    Args:
        port: The monitoring port.
        path: The path with its query string.
        timeout: Seconds for connecting and for the answer.

    Returns:
        The decoded object.

    Raises:
        OSError: No answer, a status other than 200, or a body that is not a JSON object.
    """
    status, body = get(port, path, timeout)
    if status != 200:
        raise OSError(f"{path} answered {status}: {body[:200]}")
    try:
        decoded = json.loads(body)
    except ValueError as exc:
        raise OSError(f"{path} answered with invalid JSON: {body[:200]!r}") from exc
    if not isinstance(decoded, dict):
        raise OSError(f"{path} answered with {type(decoded).__name__}, not an object")
    return decoded
