"""An agent survives what its handlers and its senders do wrong."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import ClassVar

from aclbus import wire
from aclbus.acl import ACLMessage, Performative
from aclbus.backend import (
    Backend,
    Capabilities,
    DeliveryHandler,
    Received,
    Subscription,
    SubscriptionSpec,
)
from aclbus.bus import Bus
from aclbus.middleware import Delivery
from aclbus.testing.cases.base import ALO, BusTestcase
from aclbus.testing.collector import Collector

__all__ = ["AgentResilienceTestcase", "SettlementSpy"]

_ACK_WAIT = 2.0


class SettlementSpy(Collector[Received]):
    """Records every delivery a backend hands to a bus, after the bus has handled it.

    It wraps the backend's ``subscribe``, so a test sees how the bus settled each delivery
    (``received.settled``) on any backend. Install it before the agents start.
    """

    def __init__(self, backend: Backend) -> None:
        super().__init__()
        original = backend.subscribe

        async def subscribe(spec: SubscriptionSpec, handler: DeliveryHandler) -> Subscription:
            async def spied(received: Received) -> None:
                try:
                    await handler(received)
                finally:
                    self.add(received)
                await asyncio.sleep(0)  # a broken settlement must fail the test, not hang it

            return await original(spec, spied)

        setattr(backend, "subscribe", subscribe)  # noqa: B010  (an instance attribute, on purpose)

    def on(self, subject: str) -> list[Received]:
        """The deliveries recorded on ``subject``."""
        return [r for r in self.items if r.subject == subject]


def _request(receiver: str = "worker", payload: object = None) -> ACLMessage:
    return ACLMessage(
        performative=Performative.REQUEST, sender_id="kit", receiver_id=receiver, payload=payload
    )


class AgentResilienceTestcase(BusTestcase):
    """A raising handler or a malformed message terminates that message, nothing more."""

    requires: ClassVar[Capabilities] = Capabilities(persistent=True, ack=True, term=True)

    def _worker(self, bus: Bus) -> Collector[ACLMessage]:
        """Agent ``worker``: raises on payload ``"boom"``, records everything it handles."""
        handled: Collector[ACLMessage] = Collector()

        @bus.agent("worker").on()
        async def handle(msg: ACLMessage, delivery: Delivery) -> None:
            if msg.payload == "boom":
                raise RuntimeError("the handler failed on purpose")
            handled.add(msg)

        return handled

    async def test_handler_exception_does_not_kill_the_agent(self) -> None:
        """The failing message is terminated, not redelivered; the next one is handled."""
        async with self.make_bus(ack_wait=_ACK_WAIT) as bus:
            spy = SettlementSpy(bus.backend)
            handled = self._worker(bus)
            await bus.agent("worker").start()
            await bus.send(_request(payload="boom"))
            await spy.wait_for(1)
            after = _request(payload="fine")
            await bus.send(after)
            [msg] = await handled.wait_for(1)
            assert msg.message_id == after.message_id
            await self.advance(_ACK_WAIT * 2)
            inbox = spy.on(bus.subjects.inbox("worker"))
            assert [r.settled for r in inbox] == ["term", "ack"]
            assert bus.stats.failed == 1

    async def test_malformed_headers_do_not_kill_the_agent(self) -> None:
        """Raw bytes without a valid envelope in the inbox: terminated; the agent goes on."""
        async with self.make_bus(ack_wait=_ACK_WAIT) as bus:
            await self._check_refused(bus, {"ce-specversion": "1.0", "ce-id": "x"}, b"{}")

    async def test_malformed_json_body_does_not_kill_the_agent(self) -> None:
        """A valid envelope with a body that is not JSON: terminated; the agent goes on."""
        async with self.make_bus(ack_wait=_ACK_WAIT) as bus:
            headers, _ = wire.encode(_request(), bus.codecs)
            await self._check_refused(bus, headers, b'{"unclosed": ')

    async def test_message_without_headers_does_not_kill_the_agent(self) -> None:
        """A message with no headers at all: terminated; the agent goes on."""
        async with self.make_bus(ack_wait=_ACK_WAIT) as bus:
            await self._check_refused(bus, {}, b"plain text")

    async def _check_refused(self, bus: Bus, headers: Mapping[str, str], body: bytes) -> None:
        spy = SettlementSpy(bus.backend)
        handled = self._worker(bus)
        await bus.agent("worker").start()
        inbox = bus.subjects.inbox("worker")
        await bus.backend.publish(inbox, headers, body, mode=ALO)
        await spy.wait_for(1)
        good = _request(payload="fine")
        await bus.send(good)
        [msg] = await handled.wait_for(1)
        assert msg.message_id == good.message_id
        await self.advance(_ACK_WAIT * 2)
        deliveries = spy.on(inbox)
        assert [r.settled for r in deliveries] == ["term", "ack"], "redelivered or not settled"
        assert deliveries[0].body == body
        assert bus.stats.decode_errors == 1
