"""A process for Prometheus to scrape: a bus with the metrics plugin's server and one agent.

Run by the end-to-end test (``test_prometheus.py``) with the settings in its environment
(``ACLBUS_METRICS__ENABLED=true``, ``ACLBUS_METRICS__PORT=0``, the backend's): the agent
``worker`` handles ``inform``/``order`` messages and raises on those whose payload says
``{"fail": true}``, which the bus dead-letters. It prints one JSON line,
``{"metrics": "127.0.0.1:PORT"}``, once the bus runs, and stops when its stdin closes.

The target stands for "a running gateway's /metrics": any process serving a bus' exposition
(``aclbus serve``, once it exists) can replace it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import aclbus_metrics
from aclbus import ACLMessage, Bus, Performative

__all__ = ["InjectedFailure", "main"]


class InjectedFailure(Exception):
    """The failure the test asks for: the handler raises, nothing settles the delivery."""


async def main() -> None:
    """Run the bus until stdin closes."""
    bus = Bus()

    @bus.agent("worker").on(Performative.INFORM, message_type="order")
    async def take(msg: ACLMessage) -> None:
        payload: Any = msg.payload
        if isinstance(payload, dict) and payload.get("fail"):
            raise InjectedFailure(f"injected failure of {msg.message_id}")

    async with bus:
        address = aclbus_metrics.server_address(bus)
        if address is None:
            raise SystemExit("the metrics server did not start: set ACLBUS_METRICS__PORT")
        host, port = address
        print(json.dumps({"metrics": f"{host}:{port}"}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(main())
