"""Finding the embedded nats-server another process runs on a store dir, to share it.

An `EmbeddedServer` holds an exclusive lock on its store dir while it runs (its process and
the server's both keep it), and writes its ports into the store dir's config. A second
process configured with the same store dir (``ACLBUS_DATA_DIR``) cannot start a server on it
-- two servers on one JetStream store corrupt it -- but it can connect to the one running:
`serving` finds that server's URL, once the server answers healthy. The server still stops
with the process that started it; `wait_unused` lets the commands of others that use it finish
first, for a while.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from aclbus_nats.server import monitor
from aclbus_nats.server.embedded import CONFIG_NAME, LOCK_NAME, EmbeddedServer
from aclbus_nats.server.errors import EmbeddedServerError
from aclbus_nats.server.process import HOST, open_lock

__all__ = ["serving", "wait_unused"]

_LISTEN = re.compile(r'^listen: "[^"]*:(\d+)"$', re.M)
_HTTP = re.compile(r'^http: "[^"]*:(\d+)"$', re.M)
_POLL_INTERVAL = 0.05
_PROBE_TIMEOUT = 0.5


def _held(store: Path) -> bool:
    lock_path = store / LOCK_NAME
    if not lock_path.exists():
        return False
    try:
        lock = open_lock(lock_path)
    except BlockingIOError:
        return True
    lock.close()  # free: nobody serves this store (and we do not keep it from the starter)
    return False


def _healthy_url(store: Path) -> str | None:
    try:
        config = (store / CONFIG_NAME).read_text(encoding="utf-8")
    except OSError:
        return None  # the owner has not written it yet
    listen, http = _LISTEN.search(config), _HTTP.search(config)
    if listen is None or http is None:
        return None
    port, monitor_port = int(listen.group(1)), int(http.group(1))
    try:
        status, _ = monitor.get(monitor_port, monitor.JS_READY, _PROBE_TIMEOUT)
        # A config from an earlier run names old ports, which some other server may hold now.
        theirs = monitor.get_json(monitor_port, "/varz", _PROBE_TIMEOUT).get("port")
    except OSError:
        return None  # not listening yet (the config is older than the server starting)
    return f"nats://{HOST}:{port}" if status == 200 and theirs == port else None


def serving(store_dir: Path, *, timeout: float = 10.0) -> str | None:
    """The URL of the nats-server that another process runs on ``store_dir``, if one does.

    Args:
        store_dir: The store dir of an embedded server.
        timeout: Seconds to wait for a server that holds the store dir (it may be starting)
            to answer healthy.

    Returns:
        Its client URL, once it answers healthy; None when no server holds the store dir.

    Raises:
        EmbeddedServerError: A server holds the store dir but did not answer healthy within
            ``timeout`` seconds.
    """
    store = Path(store_dir).expanduser().absolute()
    deadline = time.monotonic() + timeout
    while _held(store):
        url = _healthy_url(store)
        if url is not None:
            return url
        if time.monotonic() >= deadline:
            raise EmbeddedServerError(
                f"store dir {str(store)!r} is in use by a nats-server that did not answer "
                f"healthy within {timeout:g} s (see {store / 'nats-server.log'})"
            )
        time.sleep(_POLL_INTERVAL)
    return None


def wait_unused(server: EmbeddedServer, *, timeout: float) -> bool:
    """Wait until no client is connected to ``server`` (other processes' buses), or time is up.

    Args:
        server: A running embedded server, whose own process has closed its connections.
        timeout: Seconds to wait at most.

    Returns:
        True when no client was connected any more; False at the timeout (or when the server
        does not answer: there is nothing to wait for then).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            connz = monitor.get_json(server.monitor_port, "/connz", _PROBE_TIMEOUT)
        except OSError:
            return False
        if not connz.get("num_connections"):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_INTERVAL)
