"""What subscriptions cost the broker: the consumer limit of a stream, lazy subscriptions.

A stream takes at most ``max_consumers`` consumers (`StreamSpec.max_consumers`, the setting
``ACLBUS_STREAMS__MAX_CONSUMERS`` for the streams of a bus); one over it is refused with
`ConsumerLimitReached`, which names the stream, the limit and what to do. A lazy subscription
(`SubscriptionSpec.lazy`) makes its durable consumer only once its subject has a message: an
agent's priority lane costs nothing until someone sends it an urgent message.
"""

from __future__ import annotations

from typing import ClassVar

import pytest

from aclbus.acl import ACLMessage, Performative
from aclbus.backend import Backend, Capabilities, SubscriptionSpec
from aclbus.bus import Bus
from aclbus.errors import ConfigurationError, ConsumerLimitReached
from aclbus.subjects import TrafficClass
from aclbus.testing.cases.base import BackendTestcase, BusTestcase, publish_numbered
from aclbus.testing.collector import Collector, Deliveries

__all__ = ["AgentConsumersTestcase", "ConsumerLimitTestcase"]


class ConsumerLimitTestcase(BackendTestcase):
    """A stream refuses consumers over its limit; a lazy subscription takes one only when due."""

    requires: ClassVar[Capabilities] = Capabilities(persistent=True, durable=True, ack=True)

    async def _consumers(self, backend: Backend) -> int:
        return (await backend.stream_usage(self.stream_spec().name)).consumers

    async def test_a_stream_refuses_consumers_over_its_limit(self, backend: Backend) -> None:
        """The third consumer of a stream limited to two is refused, saying what to do."""
        name = self.stream_spec().name
        await backend.provision(self.stream_spec(max_consumers=2))  # an update of the stream
        for durable in ("one", "two"):
            await backend.subscribe(
                SubscriptionSpec(self.subject(durable), durable=durable), Deliveries()
            )
        with pytest.raises(ConsumerLimitReached) as caught:
            await backend.subscribe(
                SubscriptionSpec(self.subject("three"), durable="three"), Deliveries()
            )
        error = caught.value
        assert isinstance(error, ConfigurationError)
        assert (error.stream, error.limit) == (name, 2)
        assert name in str(error)
        assert "ACLBUS_STREAMS__MAX_CONSUMERS" in str(error)
        usage = await backend.stream_usage(name)
        assert (usage.stream, usage.consumers, usage.max_consumers) == (name, 2, 2)
        assert usage.free == 0

    async def test_binding_an_existing_consumer_needs_no_room(self, backend: Backend) -> None:
        """At the limit, another instance still joins a durable consumer that exists."""
        await backend.provision(self.stream_spec(max_consumers=1))
        subject = self.subject("shared")
        spec = SubscriptionSpec(subject, durable="svc", queue="svc")
        first, second = Deliveries(), Deliveries()
        await backend.subscribe(spec, first)
        await backend.subscribe(spec, second)
        await publish_numbered(backend, subject, 20)
        for _ in range(200):
            if len(first) + len(second) >= 20:
                break
            await self.advance(0.05)
        assert len(first) + len(second) == 20
        assert await self._consumers(backend) == 1

    async def test_raising_the_limit_lets_more_consumers_in(self, backend: Backend) -> None:
        """Provisioning the stream again with a higher limit updates it in place."""
        await backend.provision(self.stream_spec(max_consumers=1))
        await backend.subscribe(SubscriptionSpec(self.subject("a"), durable="a"), Deliveries())
        with pytest.raises(ConsumerLimitReached):
            await backend.subscribe(SubscriptionSpec(self.subject("b"), durable="b"), Deliveries())
        await backend.provision(self.stream_spec(max_consumers=2))
        await backend.subscribe(SubscriptionSpec(self.subject("b"), durable="b"), Deliveries())
        usage = await backend.stream_usage(self.stream_spec().name)
        assert (usage.consumers, usage.max_consumers) == (2, 2)

    async def test_a_lazy_subscription_takes_no_consumer_until_a_message_comes(
        self, backend: Backend
    ) -> None:
        """A lazy subscription makes its consumer for the first message, then keeps it."""
        await backend.provision(self.stream_spec(announce=self.subject("lane", "*")))
        subject = self.subject("lane", "a")
        got = Deliveries()
        await backend.subscribe(SubscriptionSpec(subject, durable="lane-a", lazy=True), got)
        assert await self._consumers(backend) == 0
        await backend.publish(self.subject("other"), {}, b"not for the lane")
        await self.advance(0.3)
        assert await self._consumers(backend) == 0
        await backend.publish(subject, {}, b"urgent-0")
        await got.wait_for(1)
        await backend.publish(subject, {}, b"urgent-1")
        await got.wait_for(2)
        assert got.bodies == [b"urgent-0", b"urgent-1"]
        assert await self._consumers(backend) == 1

    async def test_a_lazy_subscription_gets_what_was_stored_before_it(
        self, backend: Backend
    ) -> None:
        """Messages stored before the subscription make its consumer at once, in order."""
        await backend.provision(self.stream_spec(announce=self.subject("lane", "*")))
        subject = self.subject("lane", "b")
        await publish_numbered(backend, subject, 3)
        got = Deliveries()
        await backend.subscribe(SubscriptionSpec(subject, durable="lane-b", lazy=True), got)
        assert await self._consumers(backend) == 1
        await got.wait_for(3)
        assert got.bodies == [b"0", b"1", b"2"]

    async def test_a_lazy_durable_keeps_its_position(self, backend: Backend) -> None:
        """Once made, a lazy consumer is a durable like any other: a return resumes it."""
        await backend.provision(self.stream_spec(announce=self.subject("lane", "*")))
        subject = self.subject("lane", "c")
        spec = SubscriptionSpec(subject, durable="lane-c", lazy=True)
        before = Deliveries()
        sub = await backend.subscribe(spec, before)
        await backend.publish(subject, {}, b"0")
        await before.wait_for(1)
        await self.advance(0.2)
        await sub.unsubscribe()
        await backend.publish(subject, {}, b"1")
        after = Deliveries()
        await backend.subscribe(spec, after)
        await after.wait_for(1)
        await self.advance(0.3)
        assert (before.bodies, after.bodies) == ([b"0"], [b"1"])
        assert await self._consumers(backend) == 1

    async def test_a_lazy_subscription_outside_the_announced_subjects_is_eager(
        self, backend: Backend
    ) -> None:
        """Where the stream announces nothing, a lazy subscription makes its consumer at once."""
        await backend.provision(self.stream_spec(announce=self.subject("lane", "*")))
        got = Deliveries()
        await backend.subscribe(
            SubscriptionSpec(self.subject("plain"), durable="plain", lazy=True), got
        )
        assert await self._consumers(backend) == 1
        await backend.publish(self.subject("plain"), {}, b"x")
        await got.wait_for(1)


def _urgent(receiver: str, payload: object) -> ACLMessage:
    return ACLMessage(
        performative=Performative.INFORM,
        sender_id="kit",
        receiver_id=receiver,
        payload=payload,
        priority=9,
    )


class AgentConsumersTestcase(BusTestcase):
    """An agent costs one consumer on the inbox stream and one on the broadcast stream."""

    requires: ClassVar[Capabilities] = Capabilities(persistent=True, durable=True, ack=True)

    def _limited(self, max_consumers: int) -> Bus:
        limits = self.make_settings().streams.model_copy(update={"max_consumers": max_consumers})
        return self.make_bus(streams=limits)

    async def _used(self, bus: Bus, traffic: TrafficClass) -> int:
        return (await bus.backend.stream_usage(bus.subjects.stream(traffic))).consumers

    async def test_an_agent_costs_one_consumer_per_stream(self, bus: Bus) -> None:
        """Inbox and broadcasts: one consumer each; the priority lane one more once it is used."""
        got: Collector[ACLMessage] = Collector()

        @bus.agent("solo").on()
        async def record(msg: ACLMessage) -> None:
            got.add(msg)

        await bus.agent("solo").start()
        assert await self._used(bus, TrafficClass.INBOX) == 1
        assert await self._used(bus, TrafficClass.BROADCAST) == 1
        await bus.send(_urgent("solo", "now"))
        [msg] = await got.wait_for(1)
        assert msg.payload == "now"
        assert await self._used(bus, TrafficClass.INBOX) == 2  # the lane, made when needed

    async def test_agents_over_the_limit_fail_to_start_saying_what_to_do(self) -> None:
        """With room for three, the fourth agent's start fails with the setting to raise."""
        async with self._limited(3) as bus:
            for i in range(3):
                await bus.agent(f"a{i}").start()
            with pytest.raises(ConsumerLimitReached) as caught:
                await bus.agent("a3").start()
            error = caught.value
            assert (error.stream, error.limit) == (bus.subjects.stream(TrafficClass.INBOX), 3)
            assert "ACLBUS_STREAMS__MAX_CONSUMERS" in str(error)
            assert not bus.agent("a3").started
            assert all(bus.agent(f"a{i}").started for i in range(3))

    async def test_describe_reports_the_consumer_headroom(self) -> None:
        """`Bus.describe` (``aclbus doctor``): used / max per stream, headroom in agents."""
        async with self._limited(10) as bus:
            for i in range(3):
                await bus.agent(f"a{i}").start()
            facts = (await bus.describe())["consumers"]
            inbox = facts["streams"][bus.subjects.stream(TrafficClass.INBOX)]
            assert inbox == {"used": 3, "max": 10, "free": 7, "per_agent": 1, "agents": 7}
            broadcast = facts["streams"][bus.subjects.stream(TrafficClass.BROADCAST)]
            assert (broadcast["used"], broadcast["per_agent"]) == (3, 1)
            group = facts["streams"][bus.subjects.stream(TrafficClass.GROUP)]
            assert (group["used"], group["per_agent"], group["agents"]) == (0, 0, None)
            assert facts["agents_headroom"] == 7
            assert facts["setting"] == "ACLBUS_STREAMS__MAX_CONSUMERS"
