"""`NatsKeyValue.keys` on a real server: the live keys, all of them, for every reader.

It reads the bucket's stream itself instead of calling nats-py's ``keys()``, which took a
bucket for empty when the server had delivered everything but the client had counted no
message yet (seen under load as a group with no members: a scatter-gather that asked nobody).
That interleaving depends on the server's timing and is not reproduced here; these tests pin
what the reader returns.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest_asyncio

from aclbus.backend import KeyValue, KVSpec
from aclbus.settings import Settings
from aclbus_nats.backend import NatsBackend
from aclbus_nats.server import EmbeddedServer
from aclbus_nats.settings import NatsSettings


@pytest_asyncio.fixture
async def bucket(nats_server: EmbeddedServer) -> AsyncIterator[KeyValue]:
    backend = NatsBackend(Settings(backend="nats"), nats=NatsSettings(servers=[nats_server.url]))
    await backend.connect()
    name = "keys-" + uuid.uuid4().hex[:8]
    try:
        await backend.provision(KVSpec(name, storage="memory"))
        yield await backend.kv(name)
    finally:
        await backend.close()


async def test_an_empty_bucket_has_no_keys(bucket: KeyValue) -> None:
    assert await bucket.keys() == []


async def test_keys_are_the_live_ones_sorted(bucket: KeyValue) -> None:
    for key in ("b.2", "a.1", "c.3", "d.4"):
        await bucket.put(key, b"x")
    await bucket.put("a.1", b"again")  # a second revision: still one key
    await bucket.delete("c.3")
    assert await bucket.keys() == ["a.1", "b.2", "d.4"]
    await bucket.delete("a.1")
    await bucket.delete("b.2")
    await bucket.delete("d.4")
    assert await bucket.keys() == []  # only deletion markers are left


async def test_every_key_is_found_by_many_readers_at_once(bucket: KeyValue) -> None:
    keys = [f"group.agent-{i:02}" for i in range(30)]
    for key in keys:
        await bucket.put(key, b"{}")
    for _ in range(5):
        found = await asyncio.gather(*(bucket.keys() for _ in range(40)))
        assert all(f == keys for f in found), [len(f) for f in found]
