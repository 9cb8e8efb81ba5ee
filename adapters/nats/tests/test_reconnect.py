from __future__ import annotations

import random
from urllib.parse import urlparse

from nats.aio.client import Server

from aclbus_nats.reconnect import jittered_reconnect


def _server(port: int, reconnects: int) -> Server:
    return Server(uri=urlparse(f"nats://127.0.0.1:{port}"), reconnects=reconnects)


def test_least_tried_server_first_and_a_short_first_pause() -> None:
    handler = jittered_reconnect(2.0, 0.5, random.Random(1))
    servers = [_server(1, 3), _server(2, 0), _server(3, 1)]
    chosen, delay = handler(servers, {})
    assert chosen is servers[1]
    assert 0 <= delay <= 1.0  # jitter * wait


def test_pauses_spread_around_the_base_wait() -> None:
    handler = jittered_reconnect(2.0, 0.5, random.Random(7))
    delays = [handler([_server(1, 2)], {})[1] for _ in range(200)]
    assert all(1.0 <= d <= 3.0 for d in delays)
    assert max(delays) - min(delays) > 1.0  # really spread, not a fixed wait
    assert abs(sum(delays) / len(delays) - 2.0) < 0.2


def test_no_jitter_is_the_plain_wait() -> None:
    handler = jittered_reconnect(0.5, 0.0, random.Random(3))
    assert handler([_server(1, 1)], {})[1] == 0.5
    assert handler([_server(1, 0)], {})[1] == 0.0
