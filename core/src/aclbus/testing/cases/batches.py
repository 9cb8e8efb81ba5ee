"""Batch handlers: ``agent.on_batch(max_messages=, max_wait=)`` takes lists of messages."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import ClassVar

import pytest

from aclbus.acl import ACLMessage, Performative
from aclbus.backend import Capabilities
from aclbus.bus import Bus
from aclbus.dlq import Reason
from aclbus.middleware import ConsumeNext, Delivery, Middleware, MiddlewareFactory
from aclbus.plugin import hookimpl
from aclbus.settings import Settings
from aclbus.testing.cases.base import BusTestcase
from aclbus.testing.cases.typed import Task
from aclbus.testing.collector import Collector, eventually

__all__ = ["BatchTestcase"]


def _note(number: int, **fields: object) -> ACLMessage:
    return ACLMessage(
        performative=Performative.INFORM,
        sender_id="kit",
        receiver_id="batcher",
        payload=number,
        **fields,
    )


class _SkipOdd(Middleware):
    """Acknowledges odd payloads itself (they never reach the handler); logs every message."""

    def __init__(self, seen: list[object]) -> None:
        self.seen = seen

    async def consume(self, delivery: Delivery, call_next: ConsumeNext) -> None:
        """Log, then drop odd payloads or pass the others on."""
        self.seen.append(delivery.message.payload)
        if isinstance(delivery.message.payload, int) and delivery.message.payload % 2:
            await delivery.ack()
            return
        await call_next(delivery)
        self.seen.append(("done", delivery.message.payload, delivery.settled))


class _SkipOddPlugin:
    def __init__(self, seen: list[object]) -> None:
        self.seen = seen

    @hookimpl
    def aclbus_middlewares(self, settings: Settings) -> Sequence[MiddlewareFactory]:
        """One `_SkipOdd`."""
        return [lambda bus: _SkipOdd(self.seen)]


class BatchTestcase(BusTestcase):
    """`Agent.on_batch`: batches by count and by time, settlement per message, replies."""

    requires: ClassVar[Capabilities] = Capabilities(persistent=True, ack=True, request_reply=True)

    async def test_messages_come_in_batches_of_at_most_max_messages(self, bus: Bus) -> None:
        """25 messages with ``max_messages=10``: every one once, in order, none over 10."""
        batches: Collector[list[int]] = Collector()
        agent = bus.agent("batcher")

        @agent.on_batch(Performative.INFORM, max_messages=10, max_wait=0.3)
        async def handle(msgs: list[ACLMessage]) -> None:
            batches.add([m.payload for m in msgs])

        await agent.start()
        for i in range(25):
            await bus.send(_note(i))

        async def all_in() -> bool:
            return sum(len(b) for b in batches.items) >= 25

        await eventually(all_in, what="25 messages in batches")
        got = [n for batch in batches.items for n in batch]
        assert got == list(range(25))
        assert all(1 <= len(b) <= 10 for b in batches.items)
        assert max(len(b) for b in batches.items) > 1  # they were batched at all
        assert bus.stats.handled == 25

    async def test_a_partial_batch_goes_after_max_wait(self, bus: Bus) -> None:
        """Three messages and ``max_messages=100``: handled after the wait, in order."""
        batches: Collector[list[int]] = Collector()
        agent = bus.agent("batcher")

        @agent.on_batch(max_messages=100, max_wait=0.2)
        async def handle(msgs: list[ACLMessage]) -> None:
            batches.add([m.payload for m in msgs])

        await agent.start()
        for i in range(3):
            await bus.send(_note(i))

        async def three() -> bool:
            return sum(len(b) for b in batches.items) >= 3

        await eventually(three, what="the three messages")  # only the wait can send them
        assert [n for b in batches.items for n in b] == [0, 1, 2]

    async def test_the_handler_settles_messages_one_by_one(self) -> None:
        """A handler that terminates one message: the others are acknowledged, none comes back."""
        async with self.make_bus(ack_wait=1.0) as bus:
            batches: Collector[list[int]] = Collector()
            agent = bus.agent("batcher")

            @agent.on_batch(max_messages=5, max_wait=0.1)
            async def handle(msgs: list[ACLMessage], deliveries: list[Delivery]) -> None:
                for msg, delivery in zip(msgs, deliveries, strict=True):
                    if msg.payload == 2:
                        await delivery.term("not wanted")
                batches.add([m.payload for m in msgs])

            await agent.start()
            for i in range(5):
                await bus.send(_note(i))

            async def five() -> bool:
                return sum(len(b) for b in batches.items) >= 5

            await eventually(five, what="the batch")
            await self.advance(1.5)  # past ack_wait: anything unsettled would come again
            await self.advance(0.2)
            assert sorted(n for b in batches.items for n in b) == [0, 1, 2, 3, 4]
            assert bus.stats.handled == 5

    async def test_a_failing_batch_fails_each_of_its_messages(self, bus: Bus) -> None:
        """The handler raises: each message of the batch is dead-lettered with the error."""
        agent = bus.agent("batcher")
        calls: Collector[int] = Collector()

        @agent.on_batch(max_messages=3, max_wait=0.1)
        async def handle(msgs: list[ACLMessage]) -> None:
            calls.add(len(msgs))
            raise RuntimeError("the store is down")

        await agent.start()
        for i in range(3):
            await bus.send(_note(i))

        async def dead() -> bool:
            return len(await bus.dead_letters.list(origin="batcher")) == 3

        await eventually(dead, what="three dead letters")
        letters = await bus.dead_letters.list(origin="batcher")
        assert {letter.reason for letter in letters} == {Reason.HANDLER_ERROR}
        assert {letter.error_type for letter in letters} == {"RuntimeError"}
        assert sorted(letter.message(bus).payload for letter in letters) == [0, 1, 2]
        assert bus.stats.failed == 3

    async def test_replies_go_to_each_requester(self, bus: Bus) -> None:
        """A batch handler returns one reply per message: each requester gets its own."""
        agent = bus.agent("batcher")
        sizes: Collector[int] = Collector()

        @agent.on_batch(Performative.REQUEST, max_messages=4, max_wait=0.1)
        async def double(msgs: list[ACLMessage]) -> list[ACLMessage | None]:
            sizes.add(len(msgs))
            return [m.reply(Performative.INFORM, payload=m.payload * 2) for m in msgs]

        await agent.start()
        asks = [
            bus.request(_note(i).model_copy(update={"performative": Performative.REQUEST}))
            for i in range(6)
        ]
        replies = await asyncio.gather(*asks)
        assert [r.payload for r in replies] == [0, 2, 4, 6, 8, 10]
        assert all(r.performative is Performative.INFORM for r in replies)
        assert sum(sizes.items) == 6

    async def test_a_wrong_return_value_fails_the_batch(self, bus: Bus) -> None:
        """Not one reply per message: a `TypeError`, and the messages fail."""
        agent = bus.agent("batcher")

        @agent.on_batch(max_messages=2, max_wait=0.1)
        async def handle(msgs: list[ACLMessage]) -> list[ACLMessage]:
            return []

        await agent.start()
        await bus.send(_note(1))
        await bus.send(_note(2))

        async def dead() -> bool:
            return len(await bus.dead_letters.list(origin="batcher")) == 2

        await eventually(dead, what="two dead letters")
        [letter, _] = await bus.dead_letters.list(origin="batcher")
        assert letter.error_type == "TypeError"

    async def test_a_payload_that_does_not_fit_leaves_the_batch(self, bus: Bus) -> None:
        """With ``payload=Model`` the bad message is dead-lettered; the others are handled."""
        got: Collector[Task] = Collector()
        agent = bus.agent("batcher")

        @agent.on_batch(max_messages=3, max_wait=0.1, payload=Task)
        async def handle(msgs: list[ACLMessage]) -> None:
            for msg in msgs:
                assert isinstance(msg.payload, Task)
                got.add(msg.payload)

        await agent.start()
        await bus.send(_note(0).model_copy(update={"payload": {"title": "a", "effort": 1}}))
        await bus.send(_note(0).model_copy(update={"payload": {"title": "b", "effort": 99}}))
        await bus.send(_note(0).model_copy(update={"payload": {"title": "c", "effort": 2}}))
        await got.wait_for(2)

        async def dead() -> bool:
            return len(await bus.dead_letters.list(origin="batcher")) == 1

        await eventually(dead, what="the dead letter")
        [letter] = await bus.dead_letters.list(origin="batcher")
        assert letter.reason == Reason.INVALID_PAYLOAD
        assert [t.title for t in got.items] == ["a", "c"]

    async def test_stop_handles_what_is_waiting(self, bus: Bus) -> None:
        """Messages waiting for their batch when the agent stops are handled before it stops."""
        got: list[int] = []
        agent = bus.agent("batcher")

        @agent.on_batch(max_messages=100, max_wait=bus.settings.ack_wait / 2)
        async def handle(msgs: list[ACLMessage]) -> None:
            got.extend(m.payload for m in msgs)

        await agent.start()
        for i in range(4):
            await bus.send(_note(i))

        async def waiting() -> bool:
            route = agent.routes[0]
            return route.batch is not None and route.batch.waiting == 4

        await eventually(waiting, what="four waiting messages")
        await agent.stop()
        assert got == [0, 1, 2, 3]

    async def test_stop_cancels_a_handler_that_does_not_return(self) -> None:
        """A batch still running ``ack_wait`` after the stop is cancelled and comes again."""
        async with self.make_bus(ack_wait=0.5) as bus:
            calls: Collector[list[int]] = Collector()
            stuck = asyncio.Event()
            agent = bus.agent("batcher")

            @agent.on_batch(max_messages=2, max_wait=0.1)
            async def handle(msgs: list[ACLMessage]) -> None:
                calls.add([m.payload for m in msgs])
                if len(calls) == 1:
                    await stuck.wait()  # the first batch never ends

            await agent.start()
            await bus.send(_note(1))
            await bus.send(_note(2))
            await calls.wait_for(1)
            await agent.stop()
            await agent.start()
            await self.advance(1.0)
            batches = await calls.wait_for(2)
            assert sorted(n for b in batches[1:] for n in b) == [1, 2]

    async def test_consume_middleware_sees_each_message(self) -> None:
        """Middleware wraps each message of a batch; one it drops never reaches the handler."""
        seen: list[object] = []
        async with self.make_bus(plugins=[_SkipOddPlugin(seen)]) as bus:
            batches: Collector[list[int]] = Collector()
            agent = bus.agent("batcher")

            @agent.on_batch(max_messages=6, max_wait=0.2)
            async def handle(msgs: list[ACLMessage]) -> None:
                batches.add([m.payload for m in msgs])

            await agent.start()
            for i in range(6):
                await bus.send(_note(i))

            async def three() -> bool:
                return sum(len(b) for b in batches.items) >= 3

            await eventually(three, what="the even messages")
            assert [n for b in batches.items for n in b] == [0, 2, 4]

            async def finished() -> bool:
                return len([s for s in seen if isinstance(s, tuple)]) == 3

            await eventually(finished, what="the middleware to see the ends")
            # the middleware saw every message, and the handler's end (acked) of the even ones
            assert sorted(s for s in seen if isinstance(s, int)) == [0, 1, 2, 3, 4, 5]
            assert sorted(s for s in seen if isinstance(s, tuple)) == [
                ("done", 0, "ack"),
                ("done", 2, "ack"),
                ("done", 4, "ack"),
            ]

    async def test_bad_batch_settings_are_refused(self, bus: Bus) -> None:
        """Sizes and waits out of range, and async generators, fail at decoration."""
        agent = bus.agent("batcher")

        async def handle(msgs: list[ACLMessage]) -> None:
            return None

        async def stream(msgs: list[ACLMessage]):  # type: ignore[no-untyped-def]
            yield msgs

        with pytest.raises(ValueError, match="max_messages"):
            agent.on_batch(max_messages=0)
        with pytest.raises(ValueError, match="max_messages"):
            agent.on_batch(max_messages=1001)
        with pytest.raises(TypeError, match="max_messages"):
            agent.on_batch(max_messages=2.5)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="ack_wait"):
            agent.on_batch(max_wait=bus.settings.ack_wait)
        with pytest.raises(ValueError, match="max_wait"):
            agent.on_batch(max_wait=0)
        with pytest.raises(TypeError, match="async generator"):
            agent.on_batch()(stream)
        agent.on_batch()(handle)
        assert agent.routes[0].batch is not None
