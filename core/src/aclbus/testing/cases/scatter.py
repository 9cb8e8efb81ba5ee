"""Request futures with callbacks and back-pressure, scatter-gather, service instances."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import pytest

from aclbus.acl import ACLMessage, Performative
from aclbus.backend import Capabilities
from aclbus.bus import Bus
from aclbus.errors import ConfigurationError, NoResponders
from aclbus.testing.cases.base import BusTestcase
from aclbus.testing.collector import Collector, eventually

__all__ = ["RequestFutureTestcase", "ScatterGatherTestcase", "ServiceInstancesTestcase"]


def _ask(receiver: str, payload: object = None) -> ACLMessage:
    return ACLMessage(
        performative=Performative.REQUEST, sender_id="kit", receiver_id=receiver, payload=payload
    )


async def _serve(bus: Bus, agent_id: str, delay: float = 0.0) -> None:
    @bus.agent(agent_id).on(Performative.REQUEST)
    async def answer(msg: ACLMessage) -> ACLMessage:
        if delay:
            await asyncio.sleep(delay)
        return msg.reply(Performative.INFORM, {"from": agent_id, "echo": msg.payload})

    await bus.agent(agent_id).start()


class RequestFutureTestcase(BusTestcase):
    """`Bus.request_future`: futures, callbacks and a bounded number in flight."""

    requires: ClassVar[Capabilities] = Capabilities(request_reply=True)

    async def test_futures_resolve_and_callbacks_run(self, bus: Bus) -> None:
        """Many requests in flight at once, each future resolves to its own reply."""
        await _serve(bus, "calc")
        called: Collector[object] = Collector()
        futures = [
            await bus.request_future(
                _ask("calc", n), callback=lambda f: called.add(f.result().payload["echo"])
            )
            for n in range(20)
        ]
        replies = await asyncio.gather(*futures)
        assert [r.payload["echo"] for r in replies] == list(range(20))
        await called.wait_for(20)
        assert sorted(called.items) == list(range(20))  # type: ignore[type-var]

    async def test_a_future_carries_the_error(self, bus: Bus) -> None:
        """No responder: the future (and its callback) gets `NoResponders`."""
        errors: Collector[BaseException | None] = Collector()
        future = await bus.request_future(
            _ask("nobody"), timeout=2, callback=lambda f: errors.add(f.exception())
        )
        with pytest.raises(NoResponders):
            await future
        [error] = await errors.wait_for(1)
        assert isinstance(error, NoResponders)

    async def test_requests_in_flight_are_bounded(self) -> None:
        """With a limit of 2, the third `request_future` waits until a reply frees a slot."""
        async with self.make_bus(max_requests_in_flight=2, handler_concurrency=4) as bus:
            release = asyncio.Event()
            started: Collector[int] = Collector()

            @bus.agent("slow").on(Performative.REQUEST)
            async def slow(msg: ACLMessage) -> ACLMessage:
                started.add(msg.payload)
                await release.wait()
                return msg.reply(Performative.INFORM, msg.payload)

            await bus.agent("slow").start()
            try:
                first = await bus.request_future(_ask("slow", 1), timeout=10)
                second = await bus.request_future(_ask("slow", 2), timeout=10)
                third = asyncio.create_task(bus.request_future(_ask("slow", 3), timeout=10))
                await started.wait_for(2)
                await asyncio.sleep(0.2)
                assert not third.done()  # no slot: the caller is held back
                assert len(started) == 2
            finally:
                release.set()
            assert (await first).payload == 1
            assert (await second).payload == 2
            assert (await (await third)).payload == 3

    async def test_stopping_the_bus_cancels_pending_futures(self) -> None:
        """A future still waiting when its bus stops is cancelled, not left hanging."""
        bus = self.make_bus()
        await bus.start()
        try:
            never = asyncio.Event()

            @bus.agent("stuck").on(Performative.REQUEST)
            async def stuck(msg: ACLMessage) -> None:
                await never.wait()

            await bus.agent("stuck").start()
            future = await bus.request_future(_ask("stuck"), timeout=30)
            await asyncio.sleep(0.05)
            stopping = asyncio.create_task(bus.stop())
            await eventually(future.done, what="the pending future to end")
            assert future.cancelled()
        finally:
            never.set()  # let the stuck handler return, so that the bus can finish stopping
            await bus.stop()
        await stopping


class ScatterGatherTestcase(BusTestcase):
    """`Bus.gather`: ask several agents (or a group), collect until N replies or a deadline."""

    requires: ClassVar[Capabilities] = Capabilities(request_reply=True, kv=True, persistent=True)

    async def test_gather_from_receivers(self, bus: Bus) -> None:
        """Every receiver answers; replies are keyed by who sent them, in one conversation."""
        for name in ("a", "b", "c"):
            await _serve(bus, name)
        asked = _ask("a", "q")
        result = await bus.gather(asked, receivers=["a", "b", "c"], timeout=5)
        assert result.asked == ("a", "b", "c")
        assert sorted(result.replies) == ["a", "b", "c"]
        assert all(r.payload["echo"] == "q" for r in result.replies.values())
        assert {r.correlation_id for r in result.replies.values()} == {asked.message_id}
        assert result.errors == {}
        assert result.missing == ()

    async def test_gather_stops_at_count(self, bus: Bus) -> None:
        """``count=2`` returns as soon as the two fast agents answered."""
        await _serve(bus, "fast1")
        await _serve(bus, "fast2")
        await _serve(bus, "slow", delay=3.0)
        loop = asyncio.get_running_loop()
        start = loop.time()
        result = await bus.gather(
            _ask("fast1"), receivers=["fast1", "fast2", "slow"], count=2, timeout=10
        )
        assert sorted(result.replies) == ["fast1", "fast2"]
        assert result.missing == ("slow",)
        assert loop.time() - start < 3.0  # returned before the slow one could answer

    async def test_gather_returns_what_came_by_the_deadline(self, bus: Bus) -> None:
        """A slow agent misses the deadline; an absent one fails fast; the rest answered."""
        await _serve(bus, "quick")
        await _serve(bus, "sleepy", delay=3.0)
        result = await bus.gather(
            _ask("quick"), receivers=["quick", "sleepy", "ghost"], timeout=0.5
        )
        assert list(result.replies) == ["quick"]
        assert isinstance(result.errors["ghost"], NoResponders)
        assert result.missing == ("sleepy",)

    async def test_gather_from_a_group(self, bus: Bus) -> None:
        """``group=`` asks the group's current members."""
        for name in ("m1", "m2"):
            await _serve(bus, name)
            await bus.agent(name).join("panel")
        await _serve(bus, "outsider")
        result = await bus.gather(_ask("m1"), group="panel", timeout=5)
        assert sorted(result.replies) == ["m1", "m2"]
        empty = await bus.gather(_ask("m1"), group="nobody-here", timeout=1)
        assert empty.asked == ()
        assert empty.replies == {}

    async def test_bad_arguments(self, bus: Bus) -> None:
        """Neither or both of receivers/group, or a count below 1, are refused."""
        with pytest.raises(ConfigurationError):
            await bus.gather(_ask("a"))
        with pytest.raises(ConfigurationError):
            await bus.gather(_ask("a"), receivers=["a"], group="g")
        with pytest.raises(ConfigurationError, match="count"):
            await bus.gather(_ask("a"), receivers=["a"], count=0)


def _recorder(handled: Collector[tuple[int, object]], index: int):  # type: ignore[no-untyped-def]
    async def work(msg: ACLMessage) -> None:
        handled.add((index, msg.payload))

    return work


class ServiceInstancesTestcase(BusTestcase):
    """Competing consumers: instances of one agent share its inbox and come and go."""

    requires: ClassVar[Capabilities] = Capabilities(persistent=True, ack=True, queue_groups=True)

    async def test_concurrent_starts_of_one_agent_are_safe(self, bus: Bus) -> None:
        """Two tasks starting one agent at once (protocol helpers do) start it once."""
        handled: Collector[tuple[int, object]] = Collector()
        agent = bus.agent("worker")
        agent.on(Performative.REQUEST)(_recorder(handled, 0))
        await asyncio.gather(agent.start(), agent.start(), agent.join("crew"))
        assert agent.started
        # inbox, priority lane, requests, broadcasts, the group: each once
        assert len(agent.subscriptions) == 5
        await bus.send(_ask("worker", 1))
        await bus.multicast("crew", _ask("worker", 2))
        await handled.wait_for(2)
        await self.advance(0.5)
        assert sorted(p for _, p in handled.items) == [1, 2]  # type: ignore[type-var]

    async def test_instances_share_the_work_and_may_leave_and_join(self, bus: Bus) -> None:
        """Each message is handled once by some instance, while instances stop and start."""
        handled: Collector[tuple[int, object]] = Collector()
        buses = [bus, bus.sibling(), bus.sibling()]
        for b in buses[1:]:
            await b.start()
        try:
            for index, b in enumerate(buses):
                b.agent("worker").on(Performative.REQUEST)(_recorder(handled, index))
                await b.agent("worker").start()
            for n in range(30):
                await bus.send(_ask("worker", n))
            await handled.wait_for(30)
            await buses[2].agent("worker").stop()  # an instance goes away
            for n in range(30, 60):
                await bus.send(_ask("worker", n))
            await handled.wait_for(60)
            await buses[2].agent("worker").start()  # and comes back
            await buses[0].agent("worker").stop()
            for n in range(60, 90):
                await bus.send(_ask("worker", n))
            await handled.wait_for(90)
            await self.advance(0.5)
            payloads = sorted(p for _, p in handled.items)  # type: ignore[type-var]
            assert payloads == list(range(90))  # each once, none lost
            by_instance = {i for i, _ in handled.items}
            assert len(by_instance) >= 2  # the work was shared
            assert all(i != 2 for i, p in handled.items if 30 <= p < 60)  # type: ignore[operator]
        finally:
            for b in buses[1:]:
                await b.stop()
