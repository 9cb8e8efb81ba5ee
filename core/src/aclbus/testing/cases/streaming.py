"""Streams: streamed replies, pushed streams, back-pressure, chunking, cancellation.

The faults (a silent producer, a gap, a repeat, a corrupt chunk) are `StreamFaultsTestcase`,
in `aclbus.testing.cases.stream_faults`; it is importable from here too.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest

from aclbus.acl import ACLMessage, Performative
from aclbus.backend import Capabilities
from aclbus.bus import Bus
from aclbus.errors import NoResponders
from aclbus.streaming import StreamFailed, StreamRefused, StreamReport
from aclbus.testing.cases.base import BusTestcase
from aclbus.testing.cases.stream_faults import StreamFaultsTestcase
from aclbus.testing.collector import DEFAULT_TIMEOUT, Collector, eventually

__all__ = ["StreamFaultsTestcase", "StreamingTestcase"]

_MIB = 1 << 20


def _ask(to: str = "producer", performative: str = "request") -> ACLMessage:
    return ACLMessage(performative=performative, sender_id="client", receiver_id=to)


async def _collect(stream: AsyncIterator[ACLMessage], limit: int = 10_000) -> list[ACLMessage]:
    got: list[ACLMessage] = []
    async for msg in stream:
        got.append(msg)
        assert len(got) <= limit, "the stream did not end"
    return got


class StreamingTestcase(BusTestcase):
    """`Bus.request_stream`, `Bus.send_stream` and `Agent.on_stream`, end to end."""

    requires: ClassVar[Capabilities] = Capabilities(request_reply=True)

    async def test_streamed_reply_arrives_in_order_linked_to_the_request(self, bus: Bus) -> None:
        """Each yielded item is an ACL reply to the request, in order, then the stream ends."""
        producer = bus.agent("producer")

        @producer.on(Performative.REQUEST)
        async def tokens(msg: ACLMessage) -> AsyncIterator[Any]:
            for word in ("the", "quick", "brown", "fox"):
                yield {"token": word}
            yield msg.reply(Performative.CONFIRM, payload={"done": True})

        await producer.start()
        request = _ask()
        replies = await asyncio.wait_for(_collect(bus.request_stream(request)), DEFAULT_TIMEOUT)
        assert [r.payload for r in replies[:4]] == [
            {"token": w} for w in ["the", "quick", "brown", "fox"]
        ]
        assert replies[4].performative is Performative.CONFIRM
        for reply in replies:
            assert reply.correlation_id == request.message_id
            assert reply.in_reply_to == request.message_id
            assert reply.sender_id == "producer"
            assert reply.receiver_id == "client"
            assert not any(h.startswith("aclbus-flow-") for h in reply.headers)

    async def test_plain_handler_answers_with_one_reply(self, bus: Bus) -> None:
        """A receiver whose handler does not stream: its one reply is the whole stream."""
        producer = bus.agent("producer")

        @producer.on(Performative.REQUEST)
        async def answer(msg: ACLMessage) -> ACLMessage:
            return msg.reply(Performative.INFORM, payload="whole")

        await producer.start()
        replies = await asyncio.wait_for(_collect(bus.request_stream(_ask())), DEFAULT_TIMEOUT)
        assert [r.payload for r in replies] == ["whole"]

    async def test_no_responders_fails_fast(self, bus: Bus) -> None:
        """Nobody serves the receiver: `NoResponders` at once, not after the timeout."""
        with pytest.raises(NoResponders):
            await asyncio.wait_for(
                _collect(bus.request_stream(_ask("nobody"), timeout=60.0)), DEFAULT_TIMEOUT
            )

    async def test_slow_reader_holds_the_producer_back(self, bus: Bus) -> None:
        """A reader that stops reading stalls the producer within its window, then resumes."""
        producer = bus.agent("producer")
        made: list[int] = []

        @producer.on(Performative.REQUEST)
        async def numbers(msg: ACLMessage) -> AsyncIterator[int]:
            for i in range(40):
                made.append(i)
                yield i

        await producer.start()
        async with bus.request_stream(_ask(), window=4) as replies:
            first = await asyncio.wait_for(anext(replies), DEFAULT_TIMEOUT)
            assert first.payload == 0
            await eventually(lambda: len(made) >= 4, what="the producer filling its window")
            for _ in range(20):  # let the producer run as far as it can
                await self.advance(0)
                await asyncio.sleep(0.01)
            assert len(made) <= 4 + 2, f"the producer ran ahead of a reader: made {len(made)}"
            rest = await asyncio.wait_for(_collect(replies), DEFAULT_TIMEOUT)
        assert [r.payload for r in rest] == list(range(1, 40))

    async def test_break_cancels_the_producer(self, bus: Bus) -> None:
        """Leaving ``async for`` early stops an endless producer; its ``finally`` runs."""
        producer = bus.agent("producer")
        made: list[int] = []
        closed = Collector[str]()

        @producer.on(Performative.REQUEST)
        async def endless(msg: ACLMessage) -> AsyncIterator[int]:
            try:
                i = 0
                while True:
                    made.append(i)
                    yield i
                    i += 1
            finally:
                closed.add("closed")

        await producer.start()

        async def read_three() -> list[Any]:
            got = []
            async for reply in bus.request_stream(_ask(), window=4):
                got.append(reply.payload)
                if len(got) == 3:
                    break
            return got

        assert await asyncio.wait_for(read_three(), DEFAULT_TIMEOUT) == [0, 1, 2]
        await closed.wait_for(1)
        count = len(made)
        await asyncio.sleep(0.05)
        assert len(made) == count, "the producer went on after it was cancelled"
        assert count <= 3 + 4 + 2

    async def test_aclose_interrupts_a_producer_that_waits(self, bus: Bus) -> None:
        """``aclose()`` stops a producer blocked in its own await (a slow model)."""
        producer = bus.agent("producer")
        events = Collector[str]()

        @producer.on(Performative.REQUEST)
        async def slow(msg: ACLMessage) -> AsyncIterator[str]:
            try:
                yield "first"
                events.add("waiting")
                await asyncio.Event().wait()  # never set: only a cancel gets it out
                yield "never"
            except asyncio.CancelledError:
                events.add("cancelled")
                raise
            finally:
                events.add("finally")

        await producer.start()
        replies = bus.request_stream(_ask())
        first = await asyncio.wait_for(anext(replies), DEFAULT_TIMEOUT)
        assert first.payload == "first"
        await events.wait_for(1)
        await replies.aclose()
        got = await events.wait_for(3)
        assert got == ["waiting", "cancelled", "finally"]

    async def test_producer_error_reaches_the_reader_redacted(self, bus: Bus) -> None:
        """An exception in the generator: the items before it, then `StreamFailed`."""
        producer = bus.agent("producer")

        @producer.on(Performative.REQUEST)
        async def failing(msg: ACLMessage) -> AsyncIterator[int]:
            yield 1
            yield 2
            raise ValueError("model crashed, url nats://bob:hunter2@db")

        await producer.start()
        got: list[Any] = []

        async def read() -> None:
            async for reply in bus.request_stream(_ask()):
                got.append(reply.payload)
                assert len(got) < 10

        with pytest.raises(StreamFailed) as caught:
            await asyncio.wait_for(read(), DEFAULT_TIMEOUT)
        assert got == [1, 2]
        assert caught.value.error_type == "ValueError"
        assert "model crashed" in caught.value.detail
        assert "hunter2" not in str(caught.value)

    async def test_large_reply_is_chunked_and_reassembled(self, bus: Bus) -> None:
        """Replies of several MiB (over ``max_message_bytes``) arrive whole and intact."""
        producer = bus.agent("producer")
        big = os.urandom(3 * _MIB // 2).hex()  # 3 MiB of text

        @producer.on(Performative.REQUEST)
        async def large(msg: ACLMessage) -> AsyncIterator[str]:
            yield "small"
            yield big
            yield "after"

        await producer.start()
        replies = await asyncio.wait_for(
            _collect(bus.request_stream(_ask(), timeout=30.0)), 4 * DEFAULT_TIMEOUT
        )
        assert [len(r.payload) for r in replies] == [5, len(big), 5]
        assert hashlib.sha256(replies[1].payload.encode()).digest() == (
            hashlib.sha256(big.encode()).digest()
        )

    async def test_send_stream_reaches_the_stream_handler(self, bus: Bus) -> None:
        """Pushed items reach `on_stream` in order; its reply comes back in the report."""
        sink = bus.agent("sink")

        @sink.on_stream(Performative.INFORM)
        async def total(msg: ACLMessage, chunks: AsyncIterator[Any]) -> ACLMessage:
            seen = [chunk async for chunk in chunks]
            return msg.reply(Performative.INFORM, payload={"seen": seen})

        await sink.start()
        opening = ACLMessage(performative="inform", sender_id="client", receiver_id="sink")
        report = await asyncio.wait_for(
            bus.send_stream(opening, [{"n": i} for i in range(10)]), DEFAULT_TIMEOUT
        )
        assert isinstance(report, StreamReport)
        assert report.items == 10
        assert report.complete
        assert report.reply is not None
        assert report.reply.payload == {"seen": [{"n": i} for i in range(10)]}
        assert report.reply.correlation_id == opening.message_id

    async def test_send_stream_chunks_bytes_of_several_mib(self, bus: Bus) -> None:
        """A bytes item of several MiB is chunked, reassembled and verified by the receiver."""
        sink = bus.agent("sink")
        blob = os.urandom(5 * _MIB)

        @sink.on_stream()
        async def digest(msg: ACLMessage, chunks: AsyncIterator[Any]) -> ACLMessage:
            sizes, digests = [], []
            async for chunk in chunks:
                assert isinstance(chunk, bytes)
                sizes.append(len(chunk))
                digests.append(hashlib.sha256(chunk).hexdigest())
            return msg.reply(Performative.INFORM, payload={"sizes": sizes, "sha": digests})

        await sink.start()
        opening = ACLMessage(performative="inform", sender_id="client", receiver_id="sink")
        report = await asyncio.wait_for(
            bus.send_stream(opening, [b"head", blob, b"tail"], timeout=30.0),
            4 * DEFAULT_TIMEOUT,
        )
        assert report.reply is not None
        assert report.reply.payload["sizes"] == [4, len(blob), 4]
        assert report.reply.payload["sha"][1] == hashlib.sha256(blob).hexdigest()
        assert report.chunks >= 5  # 5 MiB does not fit in a 1 MiB message

    async def test_send_stream_is_held_back_by_a_slow_handler(self, bus: Bus) -> None:
        """The sender does not read ``items`` ahead of a handler that stopped reading."""
        sink = bus.agent("sink")
        go = asyncio.Event()

        @sink.on_stream()
        async def slow(msg: ACLMessage, chunks: AsyncIterator[Any]) -> None:
            count = 0
            async for _ in chunks:
                count += 1
                if count == 1:
                    await go.wait()

        await sink.start()
        produced: list[int] = []

        async def items() -> AsyncIterator[int]:
            for i in range(30):
                produced.append(i)
                yield i

        opening = ACLMessage(performative="inform", sender_id="client", receiver_id="sink")
        sending = asyncio.ensure_future(bus.send_stream(opening, items(), window=4))
        try:
            await eventually(lambda: len(produced) >= 4, what="the sender filling its window")
            for _ in range(20):
                await self.advance(0)
                await asyncio.sleep(0.01)
            assert len(produced) <= 4 + 2, f"the sender ran ahead: produced {len(produced)}"
            assert not sending.done()
            go.set()
            report = await asyncio.wait_for(sending, DEFAULT_TIMEOUT)
        finally:
            sending.cancel()
        assert report.items == 30
        assert report.reply is None

    async def test_send_stream_without_stream_handler_is_refused(self, bus: Bus) -> None:
        """An agent that has no `on_stream` handler refuses the stream: `StreamRefused`."""
        sink = bus.agent("sink")

        @sink.on(Performative.REQUEST)
        async def plain(msg: ACLMessage) -> None:
            return None

        await sink.start()
        opening = ACLMessage(performative="inform", sender_id="client", receiver_id="sink")
        with pytest.raises(StreamRefused) as caught:
            await asyncio.wait_for(bus.send_stream(opening, [1, 2]), DEFAULT_TIMEOUT)
        assert caught.value.receiver == "sink"
        assert caught.value.performative == "not-understood"

    async def test_stream_handler_error_reaches_the_sender(self, bus: Bus) -> None:
        """The receiving handler raises: the sender gets `StreamFailed` with its message."""
        sink = bus.agent("sink")

        @sink.on_stream()
        async def picky(msg: ACLMessage, chunks: AsyncIterator[Any]) -> None:
            async for chunk in chunks:
                if chunk == 3:
                    raise RuntimeError("three is not allowed")

        await sink.start()
        opening = ACLMessage(performative="inform", sender_id="client", receiver_id="sink")
        with pytest.raises(StreamFailed) as caught:
            await asyncio.wait_for(bus.send_stream(opening, range(100)), DEFAULT_TIMEOUT)
        assert caught.value.error_type == "RuntimeError"
        assert "three is not allowed" in caught.value.detail
