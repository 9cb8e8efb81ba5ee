"""Middleware order: the first factory is outermost; enter outer→inner, exit inner→outer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import ClassVar

import pytest

from aclbus.acl import ACLMessage, Performative
from aclbus.backend import Capabilities, PublishAck
from aclbus.bus import Bus
from aclbus.middleware import (
    ConsumeNext,
    Delivery,
    Middleware,
    MiddlewareFactory,
    Outgoing,
    PublishNext,
    RequestNext,
)
from aclbus.plugin import hookimpl
from aclbus.settings import Settings
from aclbus.testing.cases.base import BusTestcase
from aclbus.testing.collector import DEFAULT_TIMEOUT, Collector

__all__ = ["MiddlewareOrderTestcase"]


class Recorder(Middleware):
    """A middleware that logs ``"<name> <method> in"`` and ``"... out"`` around the next step."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    async def publish(self, out: Outgoing, call_next: PublishNext) -> PublishAck:
        """Log around a publish."""
        self.log.append(f"{self.name} publish in")
        try:
            return await call_next(out)
        finally:
            self.log.append(f"{self.name} publish out")

    async def consume(self, delivery: Delivery, call_next: ConsumeNext) -> None:
        """Log around a consume."""
        self.log.append(f"{self.name} consume in")
        try:
            await call_next(delivery)
        finally:
            self.log.append(f"{self.name} consume out")

    async def request(self, out: Outgoing, call_next: RequestNext) -> ACLMessage:
        """Log around a request."""
        self.log.append(f"{self.name} request in")
        try:
            return await call_next(out)
        finally:
            self.log.append(f"{self.name} request out")


class RecorderPlugin:
    """A plugin whose ``aclbus_middlewares`` returns one `Recorder` factory per name."""

    def __init__(self, names: Sequence[str], log: list[str]) -> None:
        self.names = names
        self.log = log

    def _factories(self) -> list[MiddlewareFactory]:
        def factory(name: str) -> MiddlewareFactory:
            return lambda bus: Recorder(name, self.log)

        return [factory(name) for name in self.names]

    @hookimpl
    def aclbus_middlewares(self, settings: Settings) -> Sequence[MiddlewareFactory]:
        """Return the recorders' factories, first name outermost."""
        return self._factories()


class FirstRecorderPlugin(RecorderPlugin):
    """The same, with ``tryfirst``: its middleware goes outside the others."""

    @hookimpl(tryfirst=True)
    def aclbus_middlewares(self, settings: Settings) -> Sequence[MiddlewareFactory]:
        """Return the recorders' factories, ahead of the other plugins'."""
        return self._factories()


def _around(names: Sequence[str], method: str, core: Sequence[str] = ()) -> list[str]:
    """The log of ``names`` wrapped around ``core``: outer in, …, core, …, outer out."""
    return (
        [f"{n} {method} in" for n in names]
        + list(core)
        + [f"{n} {method} out" for n in reversed(names)]
    )


class MiddlewareOrderTestcase(BusTestcase):
    """The order of middleware is pinned for publish, consume and request."""

    requires: ClassVar[Capabilities] = Capabilities(persistent=True, ack=True)

    async def _handled_by(self, bus: Bus, log: list[str]) -> Collector[ACLMessage]:
        got: Collector[ACLMessage] = Collector()

        @bus.agent("worker").on()
        async def handle(msg: ACLMessage) -> None:
            log.append("handler")
            got.add(msg)

        await bus.agent("worker").start()
        return got

    async def test_publish_and_consume_order(self) -> None:
        """Publish: A in, B in, B out, A out; consume: A in, B in, handler, B out, A out.

        On a real broker the delivery may start before the publisher has its ack, so the two
        chains interleave: each is checked on its own, and the publish entered first.
        """
        log: list[str] = []
        async with self.make_bus(plugins=[RecorderPlugin(["A", "B"], log)]) as bus:
            got = await self._handled_by(bus, log)
            await bus.send(ACLMessage(performative="inform", sender_id="kit", receiver_id="worker"))
            await got.wait_for(1)
            await self.advance(0.2)
        publish = [e for e in log if " publish " in e]
        consume = [e for e in log if " publish " not in e]
        assert publish == _around(["A", "B"], "publish")
        assert consume == _around(["A", "B"], "consume", ["handler"])
        assert log.index("B publish in") < log.index("A consume in")

    async def test_tryfirst_plugin_is_outermost(self) -> None:
        """A plugin's ``tryfirst`` hookimpl puts its middleware outside the others'."""
        log: list[str] = []
        plugins = [RecorderPlugin(["inner"], log), FirstRecorderPlugin(["outer"], log)]
        async with self.make_bus(plugins=plugins) as bus:
            got = await self._handled_by(bus, log)
            await bus.send(ACLMessage(performative="inform", sender_id="kit", receiver_id="worker"))
            await got.wait_for(1)
            await self.advance(0.2)
        assert [e for e in log if " publish " in e] == _around(["outer", "inner"], "publish")
        assert [e for e in log if " consume " in e] == _around(["outer", "inner"], "consume")

    @pytest.mark.aclbus_requires("request_reply")
    async def test_request_order(self) -> None:
        """A request runs the request chain around the wait; the responder, the consume chain.

        The responder's chain and the requester's may finish in either order, so each is
        checked on its own, and the request must have entered before the responder did.
        """
        log: list[str] = []
        async with self.make_bus(plugins=[RecorderPlugin(["A", "B"], log)]) as bus:
            worker = bus.agent("worker")

            @worker.on(Performative.REQUEST)
            async def handle(msg: ACLMessage) -> ACLMessage:
                log.append("handler")
                return msg.reply(Performative.INFORM)

            await worker.start()
            request = ACLMessage(performative="request", sender_id="kit", receiver_id="worker")
            reply = await asyncio.wait_for(bus.request(request, timeout=2.0), DEFAULT_TIMEOUT)
            assert reply.in_reply_to == request.message_id
            await self.advance(0.2)
        requester = [e for e in log if " request " in e]
        responder = [e for e in log if " request " not in e]
        assert requester == _around(["A", "B"], "request")
        assert responder == _around(
            ["A", "B"], "consume", ["handler", *_around(["A", "B"], "publish")]
        )
        assert log.index("B request in") < log.index("A consume in")
