"""Dead letters of one message sent to many agents: one per agent it failed at."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import pytest

from aclbus.acl import ACLMessage, Performative
from aclbus.backend import Capabilities
from aclbus.bus import Bus
from aclbus.dlq import REPLAY_HEADER, DeadLetter, Reason
from aclbus.middleware import Delivery
from aclbus.testing.cases.base import BusTestcase
from aclbus.testing.collector import Collector, eventually

__all__ = ["DeadLetterTestcase"]


def _failing(bus: Bus, name: str, got: Collector[ACLMessage], fixed: set[str]) -> None:
    """Agent ``name`` records each message and fails it until ``name`` is in ``fixed``."""

    @bus.agent(name).on()
    async def handle(msg: ACLMessage) -> None:
        got.add(msg)
        if name not in fixed:
            raise ValueError(f"{name} cannot take it")


async def _letters(bus: Bus, count: int) -> list[DeadLetter]:
    async def enough() -> bool:
        return len(await bus.dead_letters.list()) >= count

    await eventually(enough, what=f"{count} dead letters")
    return await bus.dead_letters.list()


class DeadLetterTestcase(BusTestcase):
    """A broadcast or group message that fails at several agents, dead-lettered and replayed."""

    requires: ClassVar[Capabilities] = Capabilities(persistent=True, ack=True)

    async def test_a_broadcast_failing_at_two_agents_leaves_a_dead_letter_for_each(self) -> None:
        """Each failing agent has its own dead letter: origin, attempts, its own error."""
        async with self.make_bus() as bus:
            got: dict[str, Collector[ACLMessage]] = {n: Collector() for n in ("a", "b", "c")}
            for name in ("a", "b", "c"):
                _failing(bus, name, got[name], fixed={"c"})
                await bus.agent(name).start()
            sent = ACLMessage(performative=Performative.INFORM, sender_id="kit", payload=1)
            await bus.broadcast(sent)
            letters = await _letters(bus, 2)
            await self.advance(0.3)
            assert len(await bus.dead_letters.list()) == 2  # and no third one
            by_origin = {letter.origin: letter for letter in letters}
            assert sorted(by_origin) == ["a", "b"]
            for name, letter in by_origin.items():
                assert letter.message_id == sent.message_id
                assert letter.reason == Reason.HANDLER_ERROR
                assert letter.attempts == 1
                assert letter.error == f"{name} cannot take it"
                assert letter.subject == bus.subjects.broadcast
            assert len(await bus.dead_letters.list(origin="a")) == 1

    async def test_replaying_a_broadcast_dead_letter_reaches_its_agent_only(self) -> None:
        """The replay goes to the inbox of the agent it failed at, not to every agent again."""
        async with self.make_bus() as bus:
            got: dict[str, Collector[ACLMessage]] = {n: Collector() for n in ("a", "b", "c")}
            fixed = {"c"}
            for name in ("a", "b", "c"):
                _failing(bus, name, got[name], fixed)
                await bus.agent(name).start()
            sent = ACLMessage(performative=Performative.INFORM, sender_id="kit", payload=2)
            await bus.broadcast(sent)
            letters = await _letters(bus, 2)
            fixed.add("b")
            [of_b] = [letter for letter in letters if letter.origin == "b"]
            await bus.dead_letters.replay(of_b.sequence)
            [_, again] = await got["b"].wait_for(2)
            assert again.message_id == sent.message_id
            assert again.headers.get(REPLAY_HEADER) == str(of_b.sequence)
            await self.advance(0.5)
            assert (len(got["a"]), len(got["b"]), len(got["c"])) == (1, 2, 1)
            [left] = await bus.dead_letters.list()
            assert left.origin == "a"  # the other dead letter is still there, untouched

    async def test_a_group_message_failing_at_two_members_leaves_one_each(self) -> None:
        """A multicast that fails at both members: two dead letters, one replay each."""
        async with self.make_bus() as bus:
            got: dict[str, Collector[ACLMessage]] = {n: Collector() for n in ("x", "y")}
            fixed: set[str] = set()
            for name in ("x", "y"):
                _failing(bus, name, got[name], fixed)
                await bus.agent(name).start()
                await bus.agent(name).join("team")
            await bus.multicast("team", ACLMessage(performative="inform", sender_id="kit"))
            letters = await _letters(bus, 2)
            assert sorted(letter.origin for letter in letters) == ["x", "y"]
            fixed.update({"x", "y"})
            [of_x] = [letter for letter in letters if letter.origin == "x"]
            await bus.dead_letters.replay(of_x.sequence)
            await got["x"].wait_for(2)
            await self.advance(0.5)
            assert (len(got["x"]), len(got["y"])) == (2, 1)

    @pytest.mark.aclbus_requires("max_deliver")
    async def test_a_group_member_that_never_finishes_is_named_by_the_advisory(self) -> None:
        """Exhausted deliveries of a group member: the dead letter names the member."""
        release = asyncio.Event()
        async with self.make_bus(ack_wait=0.3, max_deliver=2, handler_concurrency=4) as bus:
            member = bus.agent("mem-ber")  # a '-' in the id, as in the consumer's name

            @member.on()
            async def hang(msg: ACLMessage, delivery: Delivery) -> None:
                await release.wait()

            await member.start()
            await member.join("my-team")
            await bus.multicast("my-team", ACLMessage(performative="inform", sender_id="kit"))
            try:
                for _ in range(40):  # the broker gives up after 2 x ack_wait (of its clock)
                    await self.advance(0.2)
                    if await bus.dead_letters.list():
                        break
                [letter] = await bus.dead_letters.list()
            finally:
                release.set()
            assert letter.reason == Reason.MAX_DELIVER
            assert letter.origin == "mem-ber"
