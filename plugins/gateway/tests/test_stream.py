"""The event stream, read by a real client (httpx) from a real uvicorn process.

The gateway runs as ``python -m uvicorn --factory aclbus_gateway.app:create_app``, configured
by environment variables only, on the session's nats-server. A client reads events, goes
away, and comes back with ``Last-Event-ID``: it reads on with no gap and no repeat.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from aclbus import Bus
from aclbus.acl import build
from aclbus_nats.testing import delete_streams

from .hooks_support import free_port, nats_bus, nats_settings, wait_for

AGENT = "reader"
TOKEN = "token-of-reader"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@dataclass
class Event:
    """One event as the client parsed it."""

    id: str | None = None
    event: str | None = None
    data: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)


async def events(response: httpx.Response) -> AsyncIterator[Event]:
    """Parse ``text/event-stream`` as the SSE specification says (the subset the gateway sends)."""
    current = Event()
    async for line in response.aiter_lines():
        if line == "":
            yield current
            current = Event()
        elif line.startswith(":"):
            current.comments.append(line[1:].strip())
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "id":
                current.id = value
            elif name == "event":
                current.event = value
            elif name == "data":
                current.data.append(value)


async def read_messages(
    client: httpx.AsyncClient,
    count: int,
    *,
    headers: dict[str, str] | None = None,
    opened: asyncio.Event | None = None,
    **params: int,
) -> list[Event]:
    """Open the stream, read ``count`` message events (at most 15 s), close it.

    ``opened`` is set once the gateway's opening comment (where it starts) has come.
    """
    got: list[Event] = []
    async with asyncio.timeout(15):
        # The slot of a stream closed just before is given back once the gateway has seen
        # its client go, a moment later: until then this one is refused with 503.
        for _ in range(100):
            async with client.stream(
                "GET", "/communication/stream", headers=headers, params=params
            ) as response:
                if response.status_code == 503:
                    await asyncio.sleep(0.05)
                    continue
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                # Closed at once on leaving, not when collected: a parser left to the
                # garbage collector closes the response under the client's next request.
                async with aclosing(events(response)) as parsed:
                    async for event in parsed:
                        if opened is not None and any(
                            c.startswith("aclbus: after") for c in event.comments
                        ):
                            opened.set()
                        if event.event == "message":
                            got.append(event)
                            if len(got) == count:
                                break
                break
    return got


@pytest.fixture
def prefix(nats_url: str) -> Iterator[str]:
    name = f"st{uuid.uuid4().hex[:10]}"
    yield name
    asyncio.run(delete_streams(nats_url, name))


@pytest.fixture
def gateway(nats_url: str, prefix: str, tmp_path: Path) -> Iterator[str]:
    """The gateway as a uvicorn process (env-configured); its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "ACLBUS_BACKEND": "nats",
        "ACLBUS_NATS__SERVERS": nats_url,
        "ACLBUS_SUBJECT_PREFIX": prefix,
        "ACLBUS_STREAMS__STORAGE": "memory",
        "ACLBUS_STREAMS__MAX_BYTES": str(8 << 20),
        "ACLBUS_GATEWAY__TOKENS": json.dumps({AGENT: TOKEN}),
        "ACLBUS_GATEWAY__STREAM_POLL": "0.05",
        "ACLBUS_GATEWAY__STREAM_KEEPALIVE": "0.3",
        # One at a time: the tests' streams opened one after another show each one's slot
        # is given back when its client goes away.
        "ACLBUS_GATEWAY__STREAM_CLIENTS": "1",
    }
    command = [sys.executable, "-m", "uvicorn", "--factory", "aclbus_gateway.app:create_app"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen(command, env=env, cwd=tmp_path)  # no aclbus.toml there
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=15)


async def ready(base: str) -> None:
    async def up() -> bool:
        try:
            async with httpx.AsyncClient(base_url=base) as client:
                return (await client.get("/openapi.json")).status_code == 200
        except httpx.TransportError:
            return False

    await wait_for(up, timeout=20, what="the gateway process", every=0.1)


async def send(bus: Bus, n: int) -> str:
    msg = build(performative="inform", sender_id="writer", receiver_id=AGENT, payload={"n": n})
    await bus.send(msg)
    return msg.message_id


def message_ids(got: list[Event]) -> list[str]:
    return [json.loads("\n".join(e.data))["message_id"] for e in got]


async def test_a_client_resumes_with_last_event_id_without_gap_or_repeat(
    gateway: str, nats_url: str, prefix: str
) -> None:
    await ready(gateway)
    async with (
        nats_bus(nats_url, nats_settings(prefix)) as sender,
        httpx.AsyncClient(base_url=gateway, headers=AUTH, timeout=10) as client,
    ):
        before = [await send(sender, n) for n in range(2)]  # before the stream: not in it

        opened = asyncio.Event()

        async def first_three() -> list[Event]:
            return await read_messages(client, 3, opened=opened)

        reading = asyncio.create_task(first_three())
        async with asyncio.timeout(10):
            await opened.wait()  # the stream is open, starting "now"
        first = [await send(sender, n) for n in range(2, 5)]
        got = await reading
        assert message_ids(got) == first

        # Away: three more come meanwhile. Back with the last id seen: exactly those.
        away = [await send(sender, n) for n in range(5, 8)]
        assert got[-1].id is not None
        resumed = await read_messages(client, 3, headers={"last-event-id": got[-1].id})
        assert message_ids(resumed) == away
        ids = [int(e.id or 0) for e in got + resumed]
        assert ids == sorted(set(ids))

        # From the start of what is stored: everything, in order, once.
        everything = await read_messages(client, 8, after=0)
        assert message_ids(everything) == before + first + away
        envelope = json.loads("\n".join(everything[0].data))
        assert envelope["receiver_id"] == AGENT
        assert envelope["sender_id"] == "writer"
        assert envelope["payload"] == {"n": 0}


async def test_an_idle_stream_sends_keep_alives_and_refuses_bad_input(gateway: str) -> None:
    await ready(gateway)
    async with httpx.AsyncClient(base_url=gateway, headers=AUTH, timeout=10) as client:
        comments: list[str] = []
        async with (
            asyncio.timeout(10),
            client.stream("GET", "/communication/stream") as response,
        ):
            # Read up to a keep-alive, leaving the stream open: closing the parser would
            # close the response, and the gateway would (rightly) free its slot at once.
            async with aclosing(events(response)) as parsed:
                while "keep-alive" not in comments:
                    comments += (await anext(parsed)).comments
                async with httpx.AsyncClient(base_url=gateway, headers=AUTH) as other:
                    second = await other.get("/communication/stream")
            assert second.status_code == 503  # the one slot is taken
            assert "STREAM_CLIENTS" in second.json()["detail"]
        assert comments[0].startswith("aclbus: after ")
        bad = await client.get("/communication/stream", headers={"last-event-id": "seven"})
        assert bad.status_code == 422
        assert bad.json()["detail"][0]["loc"] == ["header", "last-event-id"]
        negative = await client.get("/communication/stream", params={"after": -1})
        assert negative.status_code == 422
        assert negative.json()["detail"][0]["loc"] == ["query", "after"]
        anonymous = await client.get("/communication/stream", headers={"authorization": ""})
        assert anonymous.status_code == 401
