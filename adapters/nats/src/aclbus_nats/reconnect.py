"""Reconnect pacing with jitter, so that a fleet of agents does not reconnect in lock step.

nats-py waits a fixed ``reconnect_time_wait`` between attempts; after a server restart every
client of a large deployment would then come back in the same instant. This handler (nats-py's
``reconnect_to_server_handler``) picks the server tried least and spreads the wait.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from nats.aio.client import Server

__all__ = ["jittered_reconnect"]


def jittered_reconnect(
    wait: float, jitter: float, rng: random.Random | None = None
) -> Callable[[Sequence[Server], dict[str, Any]], tuple[Server | None, float]]:
    """A reconnect handler: least-tried server first, ``wait`` seconds ± ``jitter`` fraction.

    A server never tried since the disconnection is tried after a short random pause (at
    most ``jitter * wait``): the first attempt is quick, the following ones spread out.

    Args:
        wait: The base pause between attempts to the same server, in seconds.
        jitter: How far the pause varies, as a fraction of ``wait`` (0.5: 50 % to 150 %).
        rng: The randomness (seeded in tests).
    """
    pick = rng or random.Random()

    def handler(servers: Sequence[Server], info: dict[str, Any]) -> tuple[Server | None, float]:
        if not servers:
            return None, wait
        server = min(servers, key=lambda s: (s.reconnects, pick.random()))
        if server.reconnects == 0:
            return server, pick.uniform(0, jitter * wait)
        return server, max(0.0, wait * (1 + pick.uniform(-jitter, jitter)))

    return handler
