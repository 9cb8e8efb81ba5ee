"""The gateway's stream route: the caller's agent's messages as Server-Sent Events."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Header, HTTPException, Query, status
from fastapi.sse import EventSourceResponse, ServerSentEvent

from aclbus.errors import ACLBusError
from aclbus_gateway.auth import Caller, caller
from aclbus_gateway.envelope import envelope_bytes
from aclbus_gateway.errors import json_responses
from aclbus_gateway.events import AgentEvents, Event
from aclbus_gateway.settings import GatewaySettings
from aclbus_gateway.state import Gateway, current_gateway

__all__ = ["router"]

log = logging.getLogger("aclbus.gateway")

router = APIRouter(prefix="/communication", tags=["stream"])

_SEQUENCE_OR_NONE = r"^([0-9]{1,19})?$"
_SLOTS = "streams.slots"


class _Slots:
    """How many event streams are open, against ``stream_clients``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0


class _Opened:
    """A stream about to be served: what it reads, where it starts, the slot it holds.

    The slot is given back when the stream's generator ends, or, if the generator never
    ran (the client left at once), when this object is collected.
    """

    def __init__(self, events: AgentEvents, after: int, slots: _Slots) -> None:
        self.events = events
        self.after = after
        slots.open += 1
        self._release = weakref.finalize(self, _give_back, slots)

    def release(self) -> None:
        """Give the slot back (once)."""
        self._release()


def _give_back(slots: _Slots) -> None:
    slots.open -= 1


async def _open(
    gateway: Annotated[Gateway, Depends(current_gateway)],
    who: Annotated[Caller, Depends(caller)],
    # A string with an empty default rather than None: a header is text or absent, and
    # `str | None` would put a JSON null into the document that no header can carry.
    last_event_id: Annotated[
        str,
        Header(
            pattern=_SEQUENCE_OR_NONE,
            description="the id of the last event seen: the stream goes on after it "
            "(empty: as if absent)",
        ),
    ] = "",
    after: Annotated[
        int | None,
        Query(
            ge=0,
            lt=2**63,
            description="start after this sequence (0: every stored message); "
            "without it and without Last-Event-ID, the stream starts now",
        ),
    ] = None,
) -> _Opened:
    """Check that the stream can be served, find where it starts, take a slot for it."""
    backend = gateway.bus.backend
    if not backend.capabilities.persistent:
        raise HTTPException(
            status.HTTP_501_NOT_IMPLEMENTED,
            detail=f"backend {backend.name!r} stores no messages, so its stream cannot be "
            "read or resumed: use a persistent backend (nats)",
        )
    slots: _Slots = gateway.extensions.setdefault(_SLOTS, _Slots(gateway.settings.stream_clients))
    if slots.open >= slots.limit:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=f"{slots.open} event streams are open, the most "
            "ACLBUS_GATEWAY__STREAM_CLIENTS allows: try again later",
            headers={"Retry-After": "5"},
        )
    events = AgentEvents(gateway.bus, who.agent_id, batch=gateway.settings.stream_batch)
    if last_event_id:
        start = int(last_event_id)
    elif after is not None:
        start = after
    else:
        start = await events.last_sequence()
    return _Opened(events, start, slots)


def _event(event: Event) -> ServerSentEvent:
    if event.message is None:
        data = {"sequence": event.sequence, "subject": event.subject, "error": event.problem}
        return ServerSentEvent(
            id=str(event.sequence), event="undecodable", raw_data=orjson.dumps(data).decode()
        )
    return ServerSentEvent(
        id=str(event.sequence), event="message", raw_data=envelope_bytes(event.message).decode()
    )


@router.get(
    "/stream",
    response_class=EventSourceResponse,
    summary="The caller's agent's messages, as Server-Sent Events",
    responses=json_responses(401, 403, 422, 501, 503),
)
async def stream(
    gateway: Annotated[Gateway, Depends(current_gateway)],
    opened: Annotated[_Opened, Depends(_open)],
) -> AsyncIterator[ServerSentEvent]:
    """Each message to the caller's agent, as an event ``message`` whose id is its sequence.

    Reconnect with ``Last-Event-ID`` (or ``?after=``) to read on after the last event seen.
    A client that goes away is noticed when the next event or keep-alive cannot be sent.
    """
    try:
        async for event in _follow(gateway.settings, opened):
            yield event
    finally:
        opened.release()


async def _follow(settings: GatewaySettings, opened: _Opened) -> AsyncIterator[ServerSentEvent]:
    cursor = opened.after
    yield ServerSentEvent(comment=f"aclbus: after {cursor}", retry=1000)
    quiet_since = time.monotonic()
    ends = quiet_since + settings.stream_duration
    while time.monotonic() < ends:
        try:
            events = await opened.events.after(cursor)
        except (ACLBusError, TimeoutError) as exc:
            # The client reconnects with the last id it got and loses nothing.
            log.warning("event stream stopped: %s", type(exc).__name__)
            yield ServerSentEvent(event="error", raw_data=orjson.dumps(str(exc)[:300]).decode())
            return
        for event in events:
            yield _event(event)
            cursor = event.sequence
        if events:
            quiet_since = time.monotonic()
            continue
        if time.monotonic() - quiet_since >= settings.stream_keepalive:
            yield ServerSentEvent(comment="keep-alive")
            quiet_since = time.monotonic()
        await asyncio.sleep(settings.stream_poll)
