"""Multicast groups: join and leave at run time, membership visible to every agent."""

from __future__ import annotations

from typing import ClassVar

import pytest

from aclbus.acl import ACLMessage, Performative
from aclbus.backend import Capabilities
from aclbus.bus import Bus
from aclbus.errors import InvalidIdentifier
from aclbus.testing.cases.base import BusTestcase
from aclbus.testing.collector import Collector, eventually

__all__ = ["GroupsTestcase"]


def _record(bus: Bus, agent_id: str) -> Collector[ACLMessage]:
    got: Collector[ACLMessage] = Collector()

    @bus.agent(agent_id).on()
    async def record(msg: ACLMessage) -> None:
        got.add(msg)

    return got


def _note(n: int) -> ACLMessage:
    return ACLMessage(performative=Performative.INFORM, sender_id="kit", payload=n)


class GroupsTestcase(BusTestcase):
    """`Agent.join`, `Agent.leave`, `Bus.multicast` and `Bus.group_members`."""

    requires: ClassVar[Capabilities] = Capabilities(persistent=True, ack=True, kv=True)

    async def test_a_group_message_reaches_every_member_once(self, bus: Bus) -> None:
        """Three members get it once each; an agent outside the group gets nothing."""
        members = {name: _record(bus, name) for name in ("a", "b", "c")}
        outsider = _record(bus, "outsider")
        for name in (*members, "outsider"):
            await bus.agent(name).start()
        for name in members:
            await bus.agent(name).join("team")
        assert await bus.group_members("team") == ["a", "b", "c"]
        await bus.multicast("team", _note(1))
        for got in members.values():
            [msg] = await got.wait_for(1)
            assert msg.payload == 1
        await self.advance(0.5)
        assert [len(got) for got in members.values()] == [1, 1, 1]
        assert len(outsider) == 0

    async def test_a_member_that_left_gets_nothing(self, bus: Bus) -> None:
        """After `leave`, the agent is no member and later group messages skip it."""
        a, b = _record(bus, "a"), _record(bus, "b")
        for name in ("a", "b"):
            await bus.agent(name).start()
            await bus.agent(name).join("team")
        await bus.agent("b").leave("team")
        assert bus.agent("b").groups == ()
        assert await bus.group_members("team") == ["a"]
        await bus.multicast("team", _note(2))
        [msg] = await a.wait_for(1)
        assert msg.payload == 2
        await self.advance(0.5)
        assert len(b) == 0

    async def test_rejoining_starts_from_new_messages(self, bus: Bus) -> None:
        """What was sent while an agent was out of the group never reaches it."""
        a, b = _record(bus, "a"), _record(bus, "b")
        for name in ("a", "b"):
            await bus.agent(name).start()
            await bus.agent(name).join("team")
        await bus.agent("b").leave("team")
        await bus.multicast("team", _note(1))
        await bus.agent("b").join("team")
        await bus.multicast("team", _note(2))
        assert [m.payload for m in await a.wait_for(2)] == [1, 2]
        [msg] = await b.wait_for(1)
        assert msg.payload == 2
        await self.advance(0.5)
        assert len(b) == 1

    async def test_membership_is_visible_to_another_bus(self, bus: Bus) -> None:
        """Another process (a sibling bus) sees who joined, and can multicast to them."""
        got = _record(bus, "a")
        await bus.agent("a").start()
        await bus.agent("a").join("ops")
        async with bus.sibling() as other:
            assert await other.group_members("ops") == ["a"]
            await other.multicast("ops", _note(7))
            [msg] = await got.wait_for(1)
            assert msg.payload == 7

    async def test_instances_of_a_member_share_its_group_messages(self, bus: Bus) -> None:
        """Two instances of one member: each group message is handled by one of them."""
        first = _record(bus, "svc")
        await bus.agent("svc").start()
        await bus.agent("svc").join("team")
        async with bus.sibling() as other:
            second = _record(other, "svc")
            await other.agent("svc").start()
            await other.agent("svc").join("team")
            for n in range(20):
                await bus.multicast("team", _note(n))
            await eventually(lambda: len(first) + len(second) >= 20, what="20 group messages")
            await self.advance(0.5)
            payloads = sorted(m.payload for m in (*first.items, *second.items))
            assert payloads == list(range(20))

    async def test_joining_before_start_takes_effect_at_start(self, bus: Bus) -> None:
        """An agent that joins before it starts is a member and gets messages once started."""
        got = _record(bus, "late")
        await bus.agent("late").join("team")
        assert await bus.group_members("team") == ["late"]
        await bus.agent("late").start()
        await bus.multicast("team", _note(3))
        [msg] = await got.wait_for(1)
        assert msg.payload == 3

    async def test_unhandled_group_messages_are_not_answered(self, bus: Bus) -> None:
        """A member with no handler for a group message acks it and sends nothing back."""
        sender = _record(bus, "kit")
        await bus.agent("kit").start()
        await bus.agent("quiet").start()
        await bus.agent("quiet").join("team")
        await bus.multicast("team", _note(1))
        await eventually(lambda: bus.stats.unhandled == 1, what="the unhandled group message")
        await self.advance(0.5)
        assert len(sender) == 0

    async def test_bad_group_names_and_leaving_a_group_not_joined(self, bus: Bus) -> None:
        """Invalid ids raise `InvalidIdentifier`; leaving a group not joined is an error."""
        agent = bus.agent("a")
        with pytest.raises(InvalidIdentifier, match="group"):
            await agent.join("bad.group")
        with pytest.raises(InvalidIdentifier):
            await bus.multicast("", _note(1))
        with pytest.raises(ValueError, match="not a member"):
            await agent.leave("never")
        await agent.join("team")
        await agent.join("team")  # twice: still one membership
        assert agent.groups == ("team",)

    async def test_a_foreign_membership_key_is_ignored(self, bus: Bus) -> None:
        """A key in the membership bucket that names no valid agent is skipped, not fatal."""
        await bus.agent("a").join("team")
        bucket = await bus.backend.kv(bus.subjects.bucket("groups"))
        await bucket.put("team.not.an-agent", b"{}")
        assert await bus.group_members("team") == ["a"]
