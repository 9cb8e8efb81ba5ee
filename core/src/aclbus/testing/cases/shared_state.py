"""Shared state: `SharedMap` on the backend's KV buckets, shared by every bus on the broker."""

from __future__ import annotations

import asyncio
from contextlib import suppress
from datetime import datetime
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from aclbus.backend import Capabilities, KVConflict
from aclbus.bus import Bus
from aclbus.errors import InvalidIdentifier
from aclbus.shared import Change, SharedMap, SharedValueError, SharedWatch
from aclbus.testing.cases.base import BusTestcase
from aclbus.testing.collector import Collector

__all__ = ["SharedMapTestcase"]


class _Task(BaseModel):
    title: str
    done: bool = False


class SharedMapTestcase(BusTestcase):
    """`Bus.shared_map`: values, compare-and-set, races between buses, watch, typed errors."""

    requires: ClassVar[Capabilities] = Capabilities(kv=True)

    async def _watch(self, watch: SharedWatch[Any]) -> tuple[Collector[Change[Any]], Any]:
        """Start ``watch``; collect its changes in the background until cancelled."""
        seen: Collector[Change[Any]] = Collector()
        await watch.start()

        async def run() -> None:
            async for change in watch:
                seen.add(change)

        task = asyncio.ensure_future(run())
        await self.advance(0.2)  # a real broker needs a moment to start the watcher
        return seen, task

    async def _stop(self, watch: SharedWatch[Any], task: asyncio.Future[None]) -> None:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        await watch.aclose()

    async def test_put_get_and_entry(self, bus: Bus) -> None:
        """``put`` returns a revision; ``get`` the value; ``entry`` value, revision and time."""
        shared = bus.shared_map("conf")
        rev = await shared.put("color", {"name": "red", "rgb": [255, 0, 0]})
        assert await shared.get("color") == {"name": "red", "rgb": [255, 0, 0]}
        entry = await shared.entry("color")
        assert entry is not None
        assert (entry.key, entry.revision) == ("color", rev)
        assert isinstance(entry.updated, datetime)
        assert entry.updated.tzinfo is not None
        assert await shared.get("never.set") is None
        assert await shared.entry("never.set") is None

    async def test_create_is_create_only(self, bus: Bus) -> None:
        """``create`` writes a new key; on an existing one it raises `KVConflict`."""
        shared = bus.shared_map("locks")
        await shared.create("job.1", "owner-a")
        with pytest.raises(KVConflict):
            await shared.create("job.1", "owner-b")
        assert await shared.get("job.1") == "owner-a"

    async def test_update_is_compare_and_set(self, bus: Bus) -> None:
        """``update`` with the revision read writes; with a stale one it raises `KVConflict`."""
        shared = bus.shared_map("cas")
        rev1 = await shared.put("n", 1)
        rev2 = await shared.update("n", 2, rev1)
        assert rev2 > rev1
        with pytest.raises(KVConflict) as caught:
            await shared.update("n", 99, rev1)
        assert caught.value.key == "n"
        assert await shared.get("n") == 2

    async def test_two_writers_race_exactly_one_wins(self, bus: Bus) -> None:
        """Two buses update one key from the same revision: one wins, the other conflicts."""
        async with bus.sibling() as other:
            mine, theirs = bus.shared_map("race"), other.shared_map("race")
            rev = await mine.put("slot", "free")
            results = await asyncio.gather(
                mine.update("slot", "mine", rev),
                theirs.update("slot", "theirs", rev),
                return_exceptions=True,
            )
            wins = [r for r in results if isinstance(r, int)]
            losses = [r for r in results if isinstance(r, KVConflict)]
            assert (len(wins), len(losses)) == (1, 1), results
            winner = "mine" if isinstance(results[0], int) else "theirs"
            assert await theirs.get("slot") == winner
            assert await mine.get("slot") == winner

    async def test_modify_loses_no_increment(self, bus: Bus) -> None:
        """Concurrent ``modify`` calls from two buses add up: no write is lost."""
        async with bus.sibling() as other:
            maps = [bus.shared_map("counters"), other.shared_map("counters")]

            async def bump(shared: SharedMap[Any]) -> None:
                for _ in range(10):
                    await shared.modify("hits", lambda n: (n or 0) + 1, attempts=100)

            await asyncio.gather(*(bump(m) for m in maps))
            assert await maps[0].get("hits") == 20
            entry = await maps[1].modify("hits", lambda n: (n or 0) * 2)
            assert (entry.value, await maps[0].get("hits")) == (40, 40)

    async def test_modify_accepts_an_async_function(self, bus: Bus) -> None:
        """``fn`` may be a coroutine function; it gets None for a key without a value."""
        shared = bus.shared_map("lists")
        got: list[object] = []

        async def append(items: list[str] | None) -> list[str]:
            got.append(items)
            return [*(items or []), "x"]

        await shared.modify("todo", append)
        await shared.modify("todo", append)
        assert got == [None, ["x"]]
        assert await shared.get("todo") == ["x", "x"]

    async def test_delete_keys_and_items(self, bus: Bus) -> None:
        """``keys``/``items`` list the live keys sorted; ``delete`` removes one."""
        shared = bus.shared_map("inventory")
        for key, value in (("b", 2), ("a", 1), ("c.d", 3)):
            await shared.put(key, value)
        await shared.delete("b")
        await shared.delete("never.there")  # nothing to delete: no error
        assert await shared.keys() == ["a", "c.d"]
        assert await shared.items() == [("a", 1), ("c.d", 3)]
        assert await shared.get("b") is None

    async def test_maps_are_separate_by_name(self, bus: Bus) -> None:
        """Two names are two maps; one name on two buses is one map."""
        await bus.shared_map("one").put("k", 1)
        await bus.shared_map("two").put("k", 2)
        async with bus.sibling() as other:
            assert await other.shared_map("one").get("k") == 1
            assert await other.shared_map("two").get("k") == 2

    async def test_watch_sees_another_bus_changes(self, bus: Bus) -> None:
        """A watch reports puts (with values) and deletes made by another bus, in order."""
        watch = bus.shared_map("board").watch()
        seen, task = await self._watch(watch)
        try:
            async with bus.sibling() as other:
                theirs = other.shared_map("board")
                rev = await theirs.put("task.1", {"state": "open"})
                await theirs.update("task.1", {"state": "done"}, rev)
                await theirs.delete("task.1")
                changes = await seen.wait_for(3)
        finally:
            await self._stop(watch, task)
        assert [(c.key, c.operation, c.value) for c in changes] == [
            ("task.1", "put", {"state": "open"}),
            ("task.1", "put", {"state": "done"}),
            ("task.1", "delete", None),
        ]
        assert changes[0].revision == rev
        assert changes[0].revision < changes[1].revision < changes[2].revision

    async def test_watch_filters_by_pattern(self, bus: Bus) -> None:
        """A watch on ``jobs.*`` sees only those keys."""
        shared = bus.shared_map("mixed")
        async with shared.watch("jobs.*") as watch:
            seen, task = await self._watch(watch)
            try:
                await shared.put("jobs.a", 1)
                await shared.put("other", 2)
                await shared.put("jobs.b", 3)
                changes = await seen.wait_for(2)
                await self.advance(0.2)
            finally:
                await self._stop(watch, task)
        assert [c.key for c in changes] == ["jobs.a", "jobs.b"]
        assert len(seen) == 2

    async def test_model_values_are_validated_both_ways(self, bus: Bus) -> None:
        """With a model, writes are validated and reads return model instances."""
        tasks = bus.shared_map("tasks", model=_Task)
        await tasks.put("t1", _Task(title="write docs"))
        await tasks.put("t2", {"title": "review", "done": True})
        got = await tasks.get("t2")
        assert got == _Task(title="review", done=True)
        with pytest.raises(SharedValueError) as caught:
            await tasks.put("t3", {"done": "not a bool", "title": 5})
        assert (caught.value.map, caught.value.key) == ("tasks", "t3")
        assert "title" in str(caught.value)
        assert await tasks.get("t3") is None

    async def test_bad_stored_value_is_a_typed_error_naming_the_key(self, bus: Bus) -> None:
        """A value another program stored that is not valid raises `SharedValueError`."""
        tasks = bus.shared_map("foreign", model=_Task)
        assert await tasks.keys() == []  # provisions the bucket
        raw = await bus.backend.kv(tasks.bucket)
        await raw.put("bad", b'{"done": 3}')
        await raw.put("junk", b"\xff not json")
        with pytest.raises(SharedValueError, match="'bad'"):
            await tasks.get("bad")
        plain = bus.shared_map("foreign")
        with pytest.raises(SharedValueError, match=r"'junk'.*not JSON"):
            await plain.get("junk")
        assert await plain.get("bad") == {"done": 3}  # valid JSON, no model: fine

    async def test_watch_skips_bad_values(self, bus: Bus) -> None:
        """A watcher survives a bad value: it is skipped, the next good one arrives."""
        tasks = bus.shared_map("survive", model=_Task)
        watch = tasks.watch()
        seen, task = await self._watch(watch)
        try:
            raw = await bus.backend.kv(tasks.bucket)
            await raw.put("bad", b'{"title": null}')
            await tasks.put("good", _Task(title="ok"))
            [change] = await seen.wait_for(1)
        finally:
            await self._stop(watch, task)
        assert (change.key, change.value) == ("good", _Task(title="ok"))

    async def test_bad_keys_names_and_values(self, bus: Bus) -> None:
        """Invalid keys, map names, patterns and values raise typed errors naming them."""
        shared = bus.shared_map("checks")
        for key in ("", "a b", "a..b", "a.*", "x>", "é"):
            with pytest.raises(InvalidIdentifier, match="shared map key"):
                await shared.put(key, 1)
        with pytest.raises(InvalidIdentifier):
            await shared.get("with space")
        with pytest.raises(InvalidIdentifier, match="shared map name"):
            bus.shared_map("bad.name")
        with pytest.raises(InvalidIdentifier, match="pattern"):
            shared.watch("a.>.b")
        with pytest.raises(SharedValueError, match="JSON"):
            await shared.put("obj", object())
        assert await shared.keys() == []
