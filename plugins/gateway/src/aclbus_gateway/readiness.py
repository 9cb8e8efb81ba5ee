"""Whether the gateway can serve: its bus started, the broker connected, JetStream answering."""

from __future__ import annotations

import asyncio

from aclbus import ACLBusError, Bus
from aclbus.subjects import TrafficClass
from aclbus_gateway.state import Gateway

__all__ = ["not_ready_because"]


async def not_ready_because(gateway: Gateway) -> str | None:
    """Why the gateway cannot serve now, or None when it can.

    On a persistent backend the inbox stream's info is asked for (one ``STREAM.INFO`` on
    NATS, within ``ready_timeout``): an answer shows both the connection and JetStream work.
    """
    bus: Bus = gateway.bus
    if not bus.started:
        return "the gateway's bus is not started"
    # Only a backend with a connection has this flag (NatsBackend); the memory engine is
    # always "connected", and the gateway does not import an adapter to ask.
    if getattr(bus.backend, "connected", True) is False:
        return f"not connected to the {bus.backend.name} broker (reconnecting)"
    if not bus.backend.capabilities.persistent:
        return None
    stream = bus.subjects.stream(TrafficClass.INBOX)
    timeout = gateway.settings.ready_timeout
    try:
        await asyncio.wait_for(bus.backend.stream_usage(stream), timeout)
    except TimeoutError:
        return f"JetStream did not answer within {timeout} s (stream {stream})"
    except ACLBusError as exc:
        return f"JetStream is not reachable: {type(exc).__name__} (stream {stream})"
    return None
