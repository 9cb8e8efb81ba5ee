"""Streams with a faulty peer: a silent producer, a gap, a repeat, a corrupt chunk, garbage.

Faults are made by a hand-written peer that speaks the flow protocol on the backend directly
(`aclbus.streaming.flow`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from typing import Any, ClassVar

import pytest

from aclbus import wire
from aclbus.acl import ACLMessage, Performative
from aclbus.backend import Capabilities, Received, SubscriptionSpec
from aclbus.bus import Bus
from aclbus.streaming import StreamBroken, StreamCancelled, StreamTimeout
from aclbus.streaming.flow import (
    Frame,
    FrameKind,
    accept_headers,
    chunk_item,
    decode_frame,
    encode_frame,
    open_headers,
)
from aclbus.testing.cases.base import AMO, BusTestcase
from aclbus.testing.collector import DEFAULT_TIMEOUT, Collector, eventually

__all__ = ["StreamFaultsTestcase"]


def _ask(to: str = "producer", performative: str = "request") -> ACLMessage:
    return ACLMessage(performative=performative, sender_id="client", receiver_id=to)


class _Peer:
    """A hand-written end of a flow on the backend, to make faults the library never makes."""

    def __init__(self, bus: Bus, flow: str, part: str) -> None:
        self.bus = bus
        self.flow = flow
        self.subject = bus.subjects.flow(flow, part)
        self.seq = 0

    async def send(self, kind: FrameKind, **fields: Any) -> None:
        self.seq += 1
        await self.send_raw(*encode_frame(Frame(self.flow, kind, self.seq, **fields)))

    async def send_raw(self, headers: Mapping[str, str], body: bytes) -> None:
        await self.bus.backend.publish(self.subject, headers, body, mode=AMO)

    async def item(self, payload: Any, request: ACLMessage) -> None:
        headers, body = wire.encode(
            request.reply(Performative.INFORM, payload=payload), self.bus.codecs
        )
        await self.send(FrameKind.ITEM, headers=headers, body=body)


class StreamFaultsTestcase(BusTestcase):
    """A silent, lossy or corrupt peer: typed errors within bounds, and nothing crashes."""

    requires: ClassVar[Capabilities] = Capabilities(request_reply=True)

    async def _fake_producer(self, bus: Bus) -> Collector[tuple[ACLMessage, _Peer]]:
        """Serve ``producer`` by hand: accept each stream, and hand its data peer to the test."""
        opened = Collector[tuple[ACLMessage, _Peer]]()

        async def accept(received: Received) -> None:
            request = wire.decode(received.headers, received.body, bus.codecs)
            flow = request.headers["aclbus-flow-id"]
            answer = request.reply(Performative.AGREE)
            headers, body = wire.encode(answer, bus.codecs)
            headers.update(accept_headers(flow, 4))
            assert received.reply
            await bus.backend.publish(received.reply, headers, body, mode=AMO)
            opened.add((request, _Peer(bus, flow, "data")))

        await bus.backend.subscribe(
            SubscriptionSpec(bus.subjects.rpc("producer"), mode=AMO), accept
        )
        return opened

    async def _cancels(self, bus: Bus, flow: str) -> Collector[Frame]:
        frames = Collector[Frame]()

        async def hear(received: Received) -> None:
            frames.add(decode_frame(received.headers, received.body))

        await bus.backend.subscribe(
            SubscriptionSpec(bus.subjects.flow(flow, "ctl"), mode=AMO), hear
        )
        return frames

    async def test_silent_producer_times_out(self, bus: Bus) -> None:
        """A producer that goes silent: `StreamTimeout` once the idle timeout has passed."""
        opened = await self._fake_producer(bus)
        replies = bus.request_stream(_ask(), timeout=2.0)
        first = asyncio.ensure_future(anext(replies))
        [(request, peer)] = await opened.wait_for(1)
        await peer.item("only", request)
        assert (await asyncio.wait_for(first, DEFAULT_TIMEOUT)).payload == "only"
        second = asyncio.ensure_future(anext(replies))
        try:
            await self.advance(1.0)
            assert not second.done(), "the stream gave up before its idle timeout"
            await self.advance(2.0)
            with pytest.raises(StreamTimeout):
                await asyncio.wait_for(second, DEFAULT_TIMEOUT)
        finally:
            second.cancel()

    @pytest.mark.parametrize("seqs", [(1, 3), (1, 1)], ids=["gap", "repeat"])
    async def test_lost_or_repeated_frame_breaks_the_stream(
        self, bus: Bus, seqs: tuple[int, int]
    ) -> None:
        """A gap or a repeat in the sequence numbers: `StreamBroken`, and the producer is told."""
        opened = await self._fake_producer(bus)
        replies = bus.request_stream(_ask())
        first = asyncio.ensure_future(anext(replies))
        [(request, peer)] = await opened.wait_for(1)
        ctl = await self._cancels(bus, peer.flow)
        headers, body = wire.encode(request.reply(Performative.INFORM, payload=1), bus.codecs)
        for seq in seqs:
            frame = Frame(peer.flow, FrameKind.ITEM, seq, body, headers)
            await peer.send_raw(*encode_frame(frame))
        assert (await asyncio.wait_for(first, DEFAULT_TIMEOUT)).payload == 1
        with pytest.raises(StreamBroken, match="frame"):
            await asyncio.wait_for(anext(replies), DEFAULT_TIMEOUT)
        await eventually(
            lambda: any(f.kind is FrameKind.CANCEL for f in ctl.items), what="a cancel frame"
        )

    async def test_corrupt_chunk_fails_its_checksum(self, bus: Bus) -> None:
        """A chunked item whose bytes changed on the way: `StreamBroken` (checksum)."""
        opened = await self._fake_producer(bus)
        replies = bus.request_stream(_ask())
        first = asyncio.ensure_future(anext(replies))
        [(request, peer)] = await opened.wait_for(1)
        headers, body = wire.encode(
            request.reply(Performative.INFORM, payload="x" * 3000), bus.codecs
        )
        chunks = chunk_item(peer.flow, headers, body, limit=2000)
        assert len(chunks) >= 2
        last = chunks[-1]
        chunks[-1] = Frame(
            last.flow, last.kind, 0, b"y" * len(last.body), part=last.part, parts=last.parts
        )
        for chunk in chunks:
            peer.seq += 1
            await peer.send_raw(*encode_frame(replace(chunk, seq=peer.seq)))
        with pytest.raises(StreamBroken, match="checksum"):
            await asyncio.wait_for(first, DEFAULT_TIMEOUT)

    async def test_dead_reader_releases_the_producer(self, bus: Bus) -> None:
        """A requester that vanishes: the producer stops within its window and is closed."""
        producer = bus.agent("producer")
        made: list[int] = []
        closed = Collector[str]()

        @producer.on(Performative.REQUEST)
        async def endless(msg: ACLMessage) -> AsyncIterator[int]:
            try:
                for i in range(1000):
                    made.append(i)
                    yield i
            finally:
                closed.add("closed")

        await producer.start()
        flow = uuid.uuid4().hex
        request = _ask()
        headers, body = wire.encode(request, bus.codecs)
        headers.update(open_headers(flow, "pull", 3, 2.0))
        # A raw requester: it opens the stream, then never reads nor answers.
        reply = await bus.backend.request(
            bus.subjects.rpc("producer"), headers, body, timeout=DEFAULT_TIMEOUT
        )
        assert reply.headers["aclbus-flow-accept"] == flow
        await eventually(lambda: len(made) >= 3, what="the producer filling its window")
        await self.advance(0)
        assert len(made) <= 3 + 1
        await self.advance(3.0)
        await closed.wait_for(1)
        assert len(made) <= 3 + 1

    async def test_bad_frames_do_not_crash_the_agent(self, bus: Bus) -> None:
        """Garbage on a stream breaks that stream only: the agent goes on serving."""
        sink = bus.agent("sink")
        errors = Collector[BaseException]()

        @sink.on_stream()
        async def reader(msg: ACLMessage, chunks: AsyncIterator[Any]) -> None:
            try:
                async for _ in chunks:
                    pass
            except StreamBroken as exc:
                errors.add(exc)

        @sink.on(Performative.QUERY_IF)
        async def alive(msg: ACLMessage) -> ACLMessage:
            return msg.reply(Performative.INFORM, payload="alive")

        await sink.start()
        flow = uuid.uuid4().hex
        opening = ACLMessage(performative="inform", sender_id="client", receiver_id="sink")
        headers, body = wire.encode(opening, bus.codecs)
        headers.update(open_headers(flow, "push", 4, 5.0))
        reply = await bus.backend.request(
            bus.subjects.rpc("sink"), headers, body, timeout=DEFAULT_TIMEOUT
        )
        assert reply.headers["aclbus-flow-accept"] == flow
        peer = _Peer(bus, flow, "data")
        await peer.send_raw({"aclbus-flow-id": flow, "aclbus-flow-kind": "bogus"}, b"\xff")
        [error] = await errors.wait_for(1)
        assert "aclbus-flow-kind" in str(error)
        answer = await asyncio.wait_for(
            bus.request(_ask("sink", performative="query-if")), DEFAULT_TIMEOUT
        )
        assert answer.payload == "alive"

    async def test_cancel_from_the_producer_reaches_the_reader(self, bus: Bus) -> None:
        """A producer that cancels: the reader gets `StreamCancelled` with the reason."""
        opened = await self._fake_producer(bus)
        replies = bus.request_stream(_ask())
        first = asyncio.ensure_future(anext(replies))
        [(_request, peer)] = await opened.wait_for(1)
        await peer.send(FrameKind.CANCEL, body=b"shutting down")
        with pytest.raises(StreamCancelled, match="shutting down"):
            await asyncio.wait_for(first, DEFAULT_TIMEOUT)
