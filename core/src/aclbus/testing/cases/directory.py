"""The agent directory (descriptions, search, watch) and presence (heartbeats, availability)."""

from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import Any, ClassVar

import pytest

from aclbus.backend import Capabilities
from aclbus.bus import Bus
from aclbus.directory import (
    AgentDescription,
    DirectoryChange,
    DirectoryWatch,
    InvalidDescription,
)
from aclbus.errors import ConfigurationError, InvalidIdentifier
from aclbus.settings import DirectorySettings
from aclbus.testing.cases.base import BusTestcase
from aclbus.testing.collector import Collector, eventually

__all__ = ["DirectoryTestcase", "PresenceTestcase"]


def _desc(agent_id: str, **fields: Any) -> AgentDescription:
    return AgentDescription(agent_id=agent_id, **fields)


class _DirectoryCase(BusTestcase):
    requires: ClassVar[Capabilities] = Capabilities(kv=True)

    heartbeat: ClassVar[float] = 0.2
    """The heartbeat interval of the agents the tests register (seconds)."""

    async def _watch(
        self, watch: DirectoryWatch
    ) -> tuple[Collector[DirectoryChange], asyncio.Future[None]]:
        seen: Collector[DirectoryChange] = Collector()
        await watch.start()

        async def run() -> None:
            async for change in watch:
                seen.add(change)

        task = asyncio.ensure_future(run())
        await self.advance(0.2)  # a real broker needs a moment to start the watchers
        return seen, task

    async def _stop(self, watch: DirectoryWatch, task: asyncio.Future[None]) -> None:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        await watch.aclose()

    @staticmethod
    async def _saw(seen: Collector[DirectoryChange], kind: str, agent_id: str) -> None:
        await eventually(
            lambda: any(c.kind == kind and c.agent_id == agent_id for c in seen.items),
            what=f"a {kind!r} change of {agent_id!r}",
        )


class DirectoryTestcase(_DirectoryCase):
    """`Bus.directory`: register, get, search by skill/protocol/ontology, deregister, watch."""

    async def test_register_get_and_search(self, bus: Bus) -> None:
        """Registered descriptions are found by skill, protocol and ontology, exactly."""
        directory = bus.directory
        await directory.register(
            _desc("translator", skills=("translate", "summarise"), protocols=("fipa-request",)),
            heartbeat=self.heartbeat,
        )
        await directory.register(
            _desc(
                "planner",
                skills=("plan",),
                protocols=("fipa-request", "fipa-contract-net"),
                ontologies=("logistics",),
                version="2.1.0",
                metadata={"region": "eu", "gpus": 2},
            ),
            heartbeat=self.heartbeat,
        )
        got = await directory.get("planner")
        assert got is not None
        assert (got.version, got.metadata) == ("2.1.0", {"region": "eu", "gpus": 2})
        assert await directory.get("nobody") is None

        def ids(found: list[AgentDescription]) -> list[str]:
            return [d.agent_id for d in found]

        assert ids(await directory.search(skill="translate")) == ["translator"]
        assert ids(await directory.search(protocol="fipa-request")) == ["planner", "translator"]
        assert ids(await directory.search(protocol="fipa-contract-net")) == ["planner"]
        assert ids(await directory.search(ontology="logistics")) == ["planner"]
        assert ids(await directory.search(skill="plan", protocol="fipa-contract-net")) == [
            "planner"
        ]
        assert await directory.search(skill="translat") == []  # exact, not a prefix
        assert ids(await directory.search()) == ["planner", "translator"]
        assert directory.registered == ["planner", "translator"]

    async def test_another_bus_finds_and_reregistering_updates(self, bus: Bus) -> None:
        """A second bus sees the registration; registering again replaces the description."""
        await bus.directory.register(
            {"agent_id": "worker", "skills": ["a"]}, heartbeat=self.heartbeat
        )
        async with bus.sibling() as other:
            [found] = await other.directory.search(skill="a")
            assert found.agent_id == "worker"
            await bus.directory.register(_desc("worker", skills=("b",)), heartbeat=self.heartbeat)
            assert await other.directory.search(skill="a") == []
            [found] = await other.directory.search(skill="b")
            assert found.skills == ("b",)
            assert await other.directory.is_available("worker")

    async def test_deregister(self, bus: Bus) -> None:
        """``deregister`` removes the description and the presence at once."""
        directory = bus.directory
        await directory.register(_desc("temp", skills=("x",)), heartbeat=self.heartbeat)
        assert await directory.is_available("temp")
        assert await directory.deregister("temp") is True
        assert await directory.get("temp") is None
        assert not await directory.is_available("temp")
        assert await directory.search(skill="x", available=None) == []
        assert directory.registered == []
        assert await directory.deregister("temp") is False
        await self.advance(self.heartbeat * 2)  # its heartbeat is stopped: it stays gone
        assert not await directory.is_available("temp")

    async def test_watch_reports_every_kind_of_change(self, bus: Bus) -> None:
        """A watch sees registered, available, updated, unavailable, deregistered."""
        watch = bus.directory.watch()
        seen, task = await self._watch(watch)
        try:
            async with bus.sibling() as other:
                await other.directory.register(_desc("w", skills=("a",)), heartbeat=self.heartbeat)
                await self._saw(seen, "registered", "w")
                await self._saw(seen, "available", "w")
                await other.directory.register(_desc("w", skills=("b",)), heartbeat=self.heartbeat)
                await self._saw(seen, "updated", "w")
                await other.directory.deregister("w")
                await self._saw(seen, "unavailable", "w")
                await self._saw(seen, "deregistered", "w")
        finally:
            await self._stop(watch, task)
        registered = next(c for c in seen.items if c.kind == "registered")
        assert registered.description is not None
        assert registered.description.skills == ("a",)
        updated = next(c for c in seen.items if c.kind == "updated")
        assert updated.description is not None
        assert updated.description.skills == ("b",)
        assert [c.kind for c in seen.items].count("available") == 1  # not once per beat

    async def test_bad_descriptions_are_typed_errors(self, bus: Bus) -> None:
        """Invalid descriptions, ids and intervals raise typed errors naming what is wrong."""
        with pytest.raises(InvalidDescription, match="agent_id"):
            AgentDescription(agent_id="has space")
        with pytest.raises(InvalidDescription, match="skills"):
            AgentDescription(agent_id="ok", skills=("",))
        with pytest.raises(InvalidDescription, match="skils"):
            AgentDescription(agent_id="ok", skils=("typo",))
        with pytest.raises(InvalidDescription, match="metadata"):
            AgentDescription(agent_id="ok", metadata={"f": object()})
        with pytest.raises(ValueError, match="version"):  # InvalidDescription is a ValueError
            AgentDescription(agent_id="ok", version="")
        directory = bus.directory
        with pytest.raises(InvalidDescription):
            await directory.register({"agent_id": "x.y"})
        with pytest.raises(InvalidDescription, match="mapping"):
            await directory.register("planner")  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="heartbeat"):
            await directory.register(_desc("ok"), heartbeat=0)
        with pytest.raises(ConfigurationError, match="PRESENCE_TTL"):
            await directory.register(_desc("ok"), heartbeat=3600)
        with pytest.raises(InvalidIdentifier):
            await directory.get("a.b")
        with pytest.raises(InvalidIdentifier):
            await directory.is_available("")
        assert await directory.search(available=None) == []

    async def test_bad_stored_description(self, bus: Bus) -> None:
        """Another writer's bad entry: ``get`` raises naming it, ``search`` leaves it out."""
        directory = bus.directory
        await directory.register(_desc("good", skills=("s",)), heartbeat=self.heartbeat)
        raw = await bus.backend.kv(directory.bucket)
        await raw.put("broken", b'{"agent_id": "broken", "skills": "not-a-list-of-str", "x": 1}')
        await raw.put("liar", _desc("someone-else").to_json())
        with pytest.raises(InvalidDescription, match="'broken'"):
            await directory.get("broken")
        with pytest.raises(InvalidDescription, match="liar"):
            await directory.get("liar")
        assert [d.agent_id for d in await directory.search(available=None)] == ["good"]
        # A newer writer's extra field is ignored, not an error.
        await raw.put("newer", b'{"agent_id": "newer", "skills": ["s"], "future": true}')
        newer = await directory.get("newer")
        assert newer is not None
        assert newer.skills == ("s",)


class PresenceTestcase(_DirectoryCase):
    """Presence by heartbeat: a live agent stays available, a dead one is not after 3 beats."""

    async def test_live_agent_stays_available(self, bus: Bus) -> None:
        """Heartbeats keep an agent available for many intervals."""
        await bus.directory.register(_desc("alive"), heartbeat=self.heartbeat)
        async with bus.sibling() as other:
            for _ in range(4):
                await self.advance(self.heartbeat * 2)
                assert await other.directory.is_available("alive")
            assert await other.directory.available() == ["alive"]
            presence = await other.directory.presence("alive")
            assert presence is not None
            assert presence.interval == pytest.approx(self.heartbeat)

    async def test_dead_agent_becomes_unavailable_within_three_intervals(self, bus: Bus) -> None:
        """An agent whose bus loses its connection (no clean stop) is unavailable in 3 beats."""
        watch = bus.directory.watch()
        seen, task = await self._watch(watch)
        mortal = bus.sibling()
        try:
            await mortal.start()
            await mortal.directory.register(
                _desc("mortal", skills=("risky",)), heartbeat=self.heartbeat
            )
            assert await bus.directory.is_available("mortal")
            await self._saw(seen, "available", "mortal")
            await mortal.backend.close()  # the process dies: no deregistration
            await self.advance(self.heartbeat * 3 + 0.05)
            assert not await bus.directory.is_available("mortal")
            assert await bus.directory.search(skill="risky") == []
            [dead] = await bus.directory.search(skill="risky", available=False)
            assert dead.agent_id == "mortal"  # its description stays, marked unavailable
            assert await bus.directory.available() == []
            await self._saw(seen, "unavailable", "mortal")
            assert not any(c.kind == "deregistered" for c in seen.items)
        finally:
            await mortal.stop()  # its deregistration fails (connection gone): logged only
            await self._stop(watch, task)

    async def test_clean_stop_deregisters_at_once(self, bus: Bus) -> None:
        """``Bus.stop`` deregisters its agents before it disconnects: no waiting for expiry."""
        watch = bus.directory.watch()
        seen, task = await self._watch(watch)
        try:
            leaving = bus.sibling()
            async with leaving:
                await leaving.directory.register(_desc("leaver"), heartbeat=self.heartbeat)
                assert await bus.directory.is_available("leaver")
            assert not await bus.directory.is_available("leaver")
            assert await bus.directory.get("leaver") is None
            await self._saw(seen, "deregistered", "leaver")
            await self._saw(seen, "unavailable", "leaver")
        finally:
            await self._stop(watch, task)

    async def test_presence_records_of_dead_agents_expire(self) -> None:
        """The presence bucket's TTL removes the record of an agent that died."""
        ttl = max(1.0, 5 * self.heartbeat)
        settings = DirectorySettings(heartbeat_interval=self.heartbeat, presence_ttl=ttl)
        async with self.make_bus(directory=settings) as bus:
            mortal = bus.sibling()
            try:
                await mortal.start()
                await mortal.directory.register(_desc("ghost"))
                assert await bus.directory.presence("ghost") is not None
                await mortal.backend.close()
                await self.advance(ttl + 0.5)

                async def gone() -> bool:
                    return await bus.directory.presence("ghost") is None

                await eventually(gone, what="the presence record to expire")
            finally:
                await mortal.stop()
