"""Dynamic topic subscriptions with wildcards, and content filters on handlers."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from aclbus.acl import ACLMessage, Performative
from aclbus.backend import Capabilities, DeliveryMode
from aclbus.bus import Bus
from aclbus.errors import ConfigurationError, InvalidIdentifier
from aclbus.testing.cases.base import BusTestcase
from aclbus.testing.collector import Collector, eventually

__all__ = ["ContentFilterTestcase", "TopicsTestcase"]


def _event(topic: str | None = None, **fields: object) -> ACLMessage:
    return ACLMessage(performative=Performative.INFORM, sender_id="kit", topic=topic, **fields)


class TopicsTestcase(BusTestcase):
    """`Bus.publish` on topics; `Agent.subscribe` / `Agent.unsubscribe` while running."""

    requires: ClassVar[Capabilities] = Capabilities(persistent=True, ack=True, wildcards=True)

    async def test_wildcard_subscription_gets_matching_topics_only(self, bus: Bus) -> None:
        """``orders.*.created`` takes ``orders.eu.created``, not ``orders.eu.paid``."""
        got: Collector[ACLMessage] = Collector()
        agent = bus.agent("audit")
        await agent.start()

        async def record(msg: ACLMessage) -> None:
            got.add(msg)

        await agent.subscribe("orders.*.created", record)
        assert agent.topics == ("orders.*.created",)
        for topic in ("orders.eu.created", "orders.eu.paid", "orders.us.created", "stock.eu"):
            await bus.publish(_event(payload=topic), topic=topic)
        msgs = await got.wait_for(2)
        assert sorted(m.topic for m in msgs if m.topic) == [
            "orders.eu.created",
            "orders.us.created",
        ]
        await self.advance(0.5)
        assert len(got) == 2

    async def test_tail_wildcard_and_several_subscribers(self, bus: Bus) -> None:
        """``orders.>`` takes every order topic; each subscribing agent gets its copy."""
        first: Collector[ACLMessage] = Collector()
        second: Collector[ACLMessage] = Collector()
        for name, got in (("one", first), ("two", second)):
            agent = bus.agent(name)
            await agent.start()
            await agent.subscribe("orders.>", got_handler(got))
        await bus.publish(_event("orders.eu.created"))
        await bus.publish(_event("orders.eu.paid.late"))
        assert len(await first.wait_for(2)) == 2
        assert len(await second.wait_for(2)) == 2

    async def test_unsubscribe_at_run_time(self, bus: Bus) -> None:
        """After `unsubscribe`, nothing more arrives; subscribing again starts from new ones."""
        got: Collector[ACLMessage] = Collector()
        agent = bus.agent("audit")
        await agent.start()
        await agent.subscribe("news.*", got_handler(got))
        await bus.publish(_event("news.a", payload=1))
        await got.wait_for(1)
        await agent.unsubscribe("news.*")
        assert agent.topics == ()
        await bus.publish(_event("news.a", payload=2))
        await self.advance(0.5)
        await agent.subscribe("news.*", got_handler(got))
        await bus.publish(_event("news.a", payload=3))
        msgs = await got.wait_for(2)
        assert [m.payload for m in msgs] == [1, 3]
        await self.advance(0.5)
        assert len(got) == 2

    async def test_at_most_once_subscription(self, bus: Bus) -> None:
        """A plain subscription gets what is published while it runs."""
        got: Collector[ACLMessage] = Collector()
        agent = bus.agent("live")
        await agent.start()
        await agent.subscribe("ticks", got_handler(got), mode=DeliveryMode.AT_MOST_ONCE)
        await bus.publish(_event("ticks", payload=1), mode=DeliveryMode.AT_MOST_ONCE)
        [msg] = await got.wait_for(1)
        assert msg.payload == 1

    async def test_subscription_made_before_start_and_general_handlers(self, bus: Bus) -> None:
        """Without its own handler, a subscription feeds the agent's handlers.

        Made before the agent starts, it starts with the agent.
        """
        got: Collector[ACLMessage] = Collector()
        agent = bus.agent("late")

        @agent.on(Performative.INFORM)
        async def general(msg: ACLMessage) -> None:
            got.add(msg)

        await agent.subscribe("alerts.>")
        await agent.start()
        await bus.publish(_event("alerts.disk.full"))
        [msg] = await got.wait_for(1)
        assert msg.topic == "alerts.disk.full"

    async def test_unhandled_topic_messages_are_acked_and_not_answered(self, bus: Bus) -> None:
        """A topic message no handler takes is dropped quietly, never answered."""
        sender: Collector[ACLMessage] = Collector()

        @bus.agent("kit").on()
        async def inbox(msg: ACLMessage) -> None:
            sender.add(msg)

        await bus.agent("kit").start()
        agent = bus.agent("picky")
        await agent.start()
        await agent.subscribe("things.>", got_handler(Collector()), message_type="thing.big")
        await bus.publish(_event("things.x", message_type="thing.small"))
        await eventually(lambda: bus.stats.unhandled == 1, what="the unhandled topic message")
        await self.advance(0.5)
        assert len(sender) == 0

    async def test_bad_patterns_and_arguments(self, bus: Bus) -> None:
        """Bad patterns and misuse give clear errors."""
        agent = bus.agent("a")
        with pytest.raises(InvalidIdentifier):
            await agent.subscribe("orders.>.eu")
        with pytest.raises(InvalidIdentifier):
            await agent.subscribe("orders..eu")
        with pytest.raises(ValueError, match="handler"):
            await agent.subscribe("orders.*", message_type="x")
        await agent.subscribe("orders.*")
        with pytest.raises(ValueError, match="already"):
            await agent.subscribe("orders.*")
        with pytest.raises(ValueError, match="does not subscribe"):
            await agent.unsubscribe("nothing")
        with pytest.raises(ConfigurationError, match="topic"):
            await bus.publish(_event())
        with pytest.raises(InvalidIdentifier):
            await bus.publish(_event(), topic="orders.*")


def got_handler(got: Collector[ACLMessage]):  # type: ignore[no-untyped-def]
    """A handler that records what it gets in ``got``."""

    async def record(msg: ACLMessage) -> None:
        got.add(msg)

    return record


class ContentFilterTestcase(BusTestcase):
    """`Agent.on` filters: performative, message_type patterns, protocol, headers, predicate."""

    requires: ClassVar[Capabilities] = Capabilities(persistent=True, ack=True)

    async def test_each_message_goes_to_the_first_matching_filter(self, bus: Bus) -> None:
        """Filters pick the handler; the catch-all takes the rest."""
        seen: Collector[tuple[str, object]] = Collector()
        agent = bus.agent("router")

        def record(name: str):  # type: ignore[no-untyped-def]
            async def handler(msg: ACLMessage) -> None:
                seen.add((name, msg.payload))

            return handler

        agent.on(message_type="task.*")(record("task"))
        agent.on(protocol="fipa-query")(record("query"))
        agent.on(headers={"region": "eu"})(record("eu"))
        agent.on(where=lambda m: isinstance(m.payload, int) and m.payload > 100)(record("big"))
        agent.on(Performative.CFP)(record("cfp"))
        agent.on()(record("rest"))
        await agent.start()
        messages: list[tuple[str, dict[str, Any]]] = [
            ("task", dict(message_type="task.translate")),
            ("rest", dict(message_type="task.translate.extra")),
            ("query", dict(protocol="fipa-query")),
            ("eu", dict(headers={"region": "eu"})),
            ("rest", dict(headers={"region": "us"})),
            ("big", dict(payload=1000)),
            ("rest", dict(payload=5)),
        ]
        for i, (_, fields) in enumerate(messages):
            payload = fields.pop("payload", i)
            await bus.send(
                ACLMessage(
                    performative=Performative.INFORM,
                    sender_id="kit",
                    receiver_id="router",
                    payload=payload,
                    **fields,
                )
            )
        await bus.send(
            ACLMessage(performative=Performative.CFP, sender_id="kit", receiver_id="router")
        )
        got = await seen.wait_for(len(messages) + 1)
        names = [name for name, _ in got]
        assert names == [name for name, _ in messages] + ["cfp"]

    async def test_a_predicate_that_raises_fails_that_message_only(self, bus: Bus) -> None:
        """The message is dead-lettered as a handler error; the next one is handled."""
        got: Collector[ACLMessage] = Collector()
        agent = bus.agent("router")

        @agent.on(where=lambda m: 1 / int(m.payload) > 0)
        async def handle(msg: ACLMessage) -> None:
            got.add(msg)

        await agent.start()
        for payload in (0, 1):
            await bus.send(
                ACLMessage(
                    performative=Performative.INFORM,
                    sender_id="kit",
                    receiver_id="router",
                    payload=payload,
                )
            )
        [msg] = await got.wait_for(1)
        assert msg.payload == 1

        async def dead() -> bool:
            return len(await bus.dead_letters.list(origin="router")) == 1

        await eventually(dead, what="the dead letter")
        [letter] = await bus.dead_letters.list(origin="router")
        assert letter.error_type == "ZeroDivisionError"

    async def test_bad_filters_are_refused(self, bus: Bus) -> None:
        """Filters are checked when the handler is registered."""
        agent = bus.agent("router")

        async def handler(msg: ACLMessage) -> None:
            return None

        with pytest.raises(InvalidIdentifier):
            agent.on(message_type="task..x")(handler)
        with pytest.raises(InvalidIdentifier):
            agent.on(protocol="fipa request")(handler)
        with pytest.raises(ValueError, match="lower-case"):
            agent.on(headers={"Region": "eu"})(handler)
        with pytest.raises(TypeError, match="pydantic model"):
            agent.on(payload=dict)(handler)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="shout"):
            agent.on("shout")(handler)
        assert agent.routes == ()
