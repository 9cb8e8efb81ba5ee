"""Key-value buckets: revisions, compare-and-set, deletion and watch."""

from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import ClassVar

import pytest
import pytest_asyncio

from aclbus.backend import Backend, Capabilities, KeyValue, KVConflict, KVEntry, KVSpec
from aclbus.testing.cases.base import BackendTestcase
from aclbus.testing.collector import DEFAULT_TIMEOUT, Collector

__all__ = ["KeyValueTestcase"]


class KeyValueTestcase(BackendTestcase):
    """A bucket provisioned from a `KVSpec`, used through `Backend.kv`."""

    requires: ClassVar[Capabilities] = Capabilities(kv=True)

    @pytest_asyncio.fixture
    async def kv(self, backend: Backend) -> KeyValue:
        """This test's bucket, provisioned with default settings."""
        bucket = f"kv-{self.namespace}"
        await backend.provision(KVSpec(bucket=bucket))
        store = await backend.kv(bucket)
        assert store.bucket == bucket
        return store

    async def _watch(
        self, kv: KeyValue, pattern: str, count: int
    ) -> tuple[Collector[KVEntry], asyncio.Task[None]]:
        """Start watching ``pattern``; collect what the watch yields, stop after ``count``."""
        seen: Collector[KVEntry] = Collector()

        async def run() -> None:
            watch = kv.watch(pattern)
            try:
                async for entry in watch:
                    seen.add(entry)
                    if len(seen) >= count:
                        break
            finally:
                aclose = getattr(watch, "aclose", None)  # an async generator's, if it is one
                if aclose is not None:
                    await aclose()

        task = asyncio.ensure_future(run())
        await self.advance(0.2)  # let the watch start before the writes it must see
        return seen, task

    async def test_put_and_get(self, kv: KeyValue) -> None:
        """``put`` returns a revision; ``get`` returns the latest entry of the key."""
        rev1 = await kv.put("color", b"red")
        entry = await kv.get("color")
        assert entry is not None
        assert (entry.bucket, entry.key, entry.value) == (kv.bucket, "color", b"red")
        assert (entry.revision, entry.operation) == (rev1, "put")
        rev2 = await kv.put("color", b"blue")
        assert rev2 > rev1
        entry = await kv.get("color")
        assert entry is not None
        assert (entry.value, entry.revision) == (b"blue", rev2)

    async def test_get_missing_key_is_none(self, kv: KeyValue) -> None:
        """A key never written reads as None."""
        assert await kv.get("never.written") is None

    async def test_revisions_grow_across_keys(self, kv: KeyValue) -> None:
        """Revisions are per bucket: every write gets a higher one."""
        revisions = [await kv.put(key, b"v") for key in ("a", "b", "a", "c")]
        assert revisions == sorted(revisions)
        assert len(set(revisions)) == 4

    async def test_create_conflicts_with_existing_key(self, kv: KeyValue) -> None:
        """``create`` writes a new key once; the second raises `KVConflict`, value kept."""
        rev = await kv.create("lock", b"owner-1")
        with pytest.raises(KVConflict) as caught:
            await kv.create("lock", b"owner-2")
        assert (caught.value.bucket, caught.value.key) == (kv.bucket, "lock")
        entry = await kv.get("lock")
        assert entry is not None
        assert (entry.value, entry.revision) == (b"owner-1", rev)

    async def test_create_after_delete(self, kv: KeyValue) -> None:
        """A deleted key has no live entry, so ``create`` succeeds again."""
        await kv.create("lock", b"owner-1")
        await kv.delete("lock")
        await kv.create("lock", b"owner-2")
        entry = await kv.get("lock")
        assert entry is not None
        assert entry.value == b"owner-2"

    async def test_update_is_compare_and_set(self, kv: KeyValue) -> None:
        """``update`` with the latest revision writes; with a stale one raises `KVConflict`."""
        rev1 = await kv.put("counter", b"1")
        rev2 = await kv.update("counter", b"2", rev1)
        assert rev2 > rev1
        with pytest.raises(KVConflict) as caught:
            await kv.update("counter", b"stale", rev1)
        assert caught.value.key == "counter"
        entry = await kv.get("counter")
        assert entry is not None
        assert (entry.value, entry.revision) == (b"2", rev2)

    async def test_update_of_missing_key_conflicts(self, kv: KeyValue) -> None:
        """There is no revision of a key never written to compare with."""
        with pytest.raises(KVConflict):
            await kv.update("ghost", b"x", 1)
        assert await kv.get("ghost") is None

    async def test_delete(self, kv: KeyValue) -> None:
        """A deleted key reads as None and is not listed; other keys are untouched."""
        await kv.put("gone", b"x")
        await kv.put("kept", b"y")
        await kv.delete("gone")
        assert await kv.get("gone") is None
        kept = await kv.get("kept")
        assert kept is not None
        assert kept.value == b"y"
        assert await kv.keys() == ["kept"]

    async def test_delete_with_the_latest_revision_is_compare_and_delete(
        self, kv: KeyValue
    ) -> None:
        """``delete(key, revision=)`` deletes only while ``revision`` is the latest."""
        rev1 = await kv.put("job", b"v1")
        rev2 = await kv.put("job", b"v2")
        with pytest.raises(KVConflict) as caught:
            await kv.delete("job", revision=rev1)
        assert (caught.value.bucket, caught.value.key) == (kv.bucket, "job")
        assert str(rev1) in str(caught.value)
        entry = await kv.get("job")
        assert entry is not None
        assert (entry.value, entry.revision) == (b"v2", rev2)  # nothing deleted
        await kv.delete("job", revision=rev2)
        assert await kv.get("job") is None
        assert await kv.keys() == []

    async def test_a_conditional_delete_counts_a_deletion_as_a_revision(self, kv: KeyValue) -> None:
        """After a deletion the put's revision is stale; a key never written has none."""
        rev = await kv.put("gone", b"x")
        await kv.delete("gone")
        with pytest.raises(KVConflict):
            await kv.delete("gone", revision=rev)
        with pytest.raises(KVConflict):
            await kv.delete("never.written", revision=rev)
        assert await kv.get("never.written") is None

    async def test_two_racing_conditional_deletes_one_wins(self, kv: KeyValue) -> None:
        """Two deleters holding the same revision: exactly one deletes, the other conflicts."""
        rev = await kv.put("claim", b"owner")
        results = await asyncio.gather(
            kv.delete("claim", revision=rev),
            kv.delete("claim", revision=rev),
            return_exceptions=True,
        )
        assert sorted(type(r).__name__ for r in results) == ["KVConflict", "NoneType"], results
        assert await kv.get("claim") is None

    async def test_a_conditional_delete_needs_a_revision_of_at_least_one(
        self, kv: KeyValue
    ) -> None:
        """Revisions start at 1: ``revision=0`` is a mistake, not "delete if absent"."""
        await kv.put("kept", b"v")
        with pytest.raises(ValueError, match="revision"):
            await kv.delete("kept", revision=0)
        assert await kv.get("kept") is not None

    async def test_keys_are_the_live_keys_sorted(self, kv: KeyValue) -> None:
        """``keys`` lists each live key once, sorted, dotted keys included."""
        assert await kv.keys() == []
        for key in ("zeta", "alpha", "agent.b", "agent.a", "alpha"):
            await kv.put(key, b"v")
        assert await kv.keys() == ["agent.a", "agent.b", "alpha", "zeta"]

    async def test_watch_sees_puts_and_deletes(self, kv: KeyValue) -> None:
        """A watch yields each later change, a deletion as an ``operation="delete"`` entry."""
        seen, task = await self._watch(kv, ">", 3)
        try:
            rev_a = await kv.put("a", b"1")
            rev_b = await kv.put("b", b"2")
            await kv.delete("a")
            entries = await seen.wait_for(3)
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        assert [(e.key, e.operation) for e in entries] == [
            ("a", "put"),
            ("b", "put"),
            ("a", "delete"),
        ]
        assert [(e.value, e.revision) for e in entries[:2]] == [(b"1", rev_a), (b"2", rev_b)]
        assert entries[2].revision > rev_b

    async def test_a_started_watch_sees_the_next_write(self, kv: KeyValue) -> None:
        """Once `started_watch` returns, a write made at once is seen (no start-up race)."""
        await kv.put("before", b"0")
        changes = await kv.started_watch(">")
        try:
            await kv.put("after", b"1")
            entry = await asyncio.wait_for(anext(changes), DEFAULT_TIMEOUT)
        finally:
            closer = getattr(changes, "aclose", None)
            if closer is not None:
                await closer()
        assert (entry.key, entry.value, entry.operation) == ("after", b"1", "put")

    async def test_watch_filters_by_pattern(self, kv: KeyValue) -> None:
        """A watch on ``agents.*`` sees only the keys matching it."""
        seen, task = await self._watch(kv, "agents.*", 2)
        try:
            await kv.put("agents.a", b"1")
            await kv.put("tasks.a", b"x")
            await kv.put("agents.b", b"2")
            entries = await seen.wait_for(2)
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        assert [e.key for e in entries] == ["agents.a", "agents.b"]

    async def test_entries_expire_after_the_bucket_ttl(self, backend: Backend) -> None:
        """In a bucket with a ``ttl``, an entry older than it reads as None."""
        bucket = f"kvttl-{self.namespace}"
        await backend.provision(KVSpec(bucket=bucket, ttl=1.0))
        kv = await backend.kv(bucket)
        await kv.put("short", b"lived")
        assert await kv.get("short") is not None
        await self.advance(2.5)
        assert await kv.get("short") is None
        assert await kv.keys() == []
