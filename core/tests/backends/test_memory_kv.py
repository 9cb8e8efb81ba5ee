"""KV buckets: TTL on the engine's clock, revisions, markers, watches and errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from aclbus.backend import KVConflict, KVEntry, KVSpec
from aclbus.backends.memory import ManualClock, MemoryBackend
from aclbus.errors import BackendClosed, ConfigurationError, InvalidIdentifier, MessageTooLarge


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def backend(clock: ManualClock) -> AsyncIterator[MemoryBackend]:
    async with MemoryBackend(clock=clock, max_payload=1024) as backend:
        await backend.provision(KVSpec("presence", ttl=10.0))
        await backend.provision(KVSpec("directory"))
        yield backend


async def test_ttl_expires_entries_on_the_clock(backend: MemoryBackend, clock: ManualClock) -> None:
    kv = await backend.kv("presence")
    await kv.put("agent.a", b"up")
    await clock.advance(6)
    await kv.put("agent.b", b"up")
    await clock.advance(3.999)
    assert await kv.keys() == ["agent.a", "agent.b"]
    await clock.advance(0.001)
    assert await kv.get("agent.a") is None
    assert await kv.keys() == ["agent.b"]
    await clock.advance(6)
    assert await kv.keys() == []


async def test_put_refreshes_the_ttl(backend: MemoryBackend, clock: ManualClock) -> None:
    kv = await backend.kv("presence")
    await kv.put("agent.a", b"up")
    for _ in range(3):
        await clock.advance(8)
        await kv.put("agent.a", b"still up")
    entry = await kv.get("agent.a")
    assert entry is not None
    assert entry.value == b"still up"


async def test_expired_key_can_be_created_but_not_updated(
    backend: MemoryBackend, clock: ManualClock
) -> None:
    kv = await backend.kv("presence")
    rev = await kv.create("lock", b"owner-1")
    await clock.advance(10)
    with pytest.raises(KVConflict, match=f"expected revision {rev}"):
        await kv.update("lock", b"owner-1", rev)
    assert await kv.create("lock", b"owner-2") > rev


async def test_entries_carry_the_wall_clock_of_the_engine(
    backend: MemoryBackend, clock: ManualClock
) -> None:
    kv = await backend.kv("directory")
    await clock.advance(42)
    await kv.put("a", b"1")
    entry = await kv.get("a")
    assert entry is not None
    assert entry.created == clock.wall()


async def test_update_after_delete_uses_the_marker_revision(backend: MemoryBackend) -> None:
    kv = await backend.kv("directory")
    await kv.put("k", b"1")
    await kv.delete("k")
    with pytest.raises(KVConflict, match="k: expected revision 1, but the latest is 2"):
        await kv.update("k", b"2", 1)
    assert await kv.update("k", b"2", 2) == 3


async def test_watch_sees_changes_from_its_creation_and_ends_on_aclose(
    backend: MemoryBackend, clock: ManualClock
) -> None:
    kv = await backend.kv("directory")
    await kv.put("agents.early", b"not seen")
    watch = kv.watch("agents.>")
    await kv.put("agents.a", b"1")
    await kv.put("tasks.a", b"x")
    await kv.delete("agents.a")
    seen: list[KVEntry] = []

    async def consume() -> None:
        async for entry in watch:
            seen.append(entry)

    task = asyncio.create_task(consume())
    await clock.settle()
    assert [(e.key, e.operation, e.value) for e in seen] == [
        ("agents.a", "put", b"1"),
        ("agents.a", "delete", b""),
    ]
    await watch.aclose()  # type: ignore[attr-defined]
    await asyncio.wait_for(task, 1.0)
    await kv.put("agents.b", b"after close")
    assert len(seen) == 2


async def test_backend_close_ends_watches(backend: MemoryBackend, clock: ManualClock) -> None:
    kv = await backend.kv("directory")
    seen: list[KVEntry] = []

    async def consume() -> None:
        async for entry in kv.watch():
            seen.append(entry)

    task = asyncio.create_task(consume())
    await clock.settle()
    await kv.put("a", b"1")
    await clock.settle()
    await backend.close()
    await asyncio.wait_for(task, 1.0)
    assert [e.key for e in seen] == ["a"]
    with pytest.raises(BackendClosed):
        await kv.get("a")


async def test_missing_bucket_is_a_clear_error(backend: MemoryBackend) -> None:
    with pytest.raises(ConfigurationError) as caught:
        await backend.kv("nope")
    message = str(caught.value)
    assert "'nope'" in message
    assert "KVSpec(bucket='nope')" in message
    assert "directory, presence" in message


async def test_bad_keys_values_and_specs(backend: MemoryBackend) -> None:
    kv = await backend.kv("directory")
    for key in ("", "a..b", ".a", "a b", "a.*"):
        with pytest.raises(InvalidIdentifier, match="KV key"):
            await kv.put(key, b"x")
    with pytest.raises(MessageTooLarge) as caught:
        await kv.put("big", b"x" * 1025)
    assert "directory/big" in str(caught.value)
    with pytest.raises(ConfigurationError, match="ttl=0"):
        await backend.provision(KVSpec("b", ttl=0))
    with pytest.raises(ConfigurationError, match="history=0"):
        await backend.provision(KVSpec("b", history=0))


async def test_reprovision_keeps_the_data(backend: MemoryBackend, clock: ManualClock) -> None:
    kv = await backend.kv("presence")
    await kv.put("a", b"1")
    await backend.provision(KVSpec("presence", ttl=None))
    await clock.advance(100)
    entry = await kv.get("a")
    # An entry keeps the expiry it was written with; new writes follow the new spec.
    assert entry is None
    await kv.put("b", b"2")
    await clock.advance(100)
    assert await kv.keys() == ["b"]
