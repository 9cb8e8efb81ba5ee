"""The backend as a whole: life cycle, close, registration, describe and request-reply."""

from __future__ import annotations

import asyncio
import gc
import json
from dataclasses import fields
from types import SimpleNamespace

import pluggy
import pytest

from aclbus.backend import (
    Capabilities,
    DeliveryMode,
    KVSpec,
    Received,
    StreamSpec,
    SubscriptionSpec,
)
from aclbus.backends import memory
from aclbus.backends.memory import Faults, ManualClock, MemoryBackend
from aclbus.errors import BackendClosed, NoResponders, RequestTimeout
from aclbus.plugin import spec as hookspecs
from aclbus.testing.collector import Deliveries

AMO = DeliveryMode.AT_MOST_ONCE


def _others() -> set[asyncio.Task[object]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def test_close_cancels_every_task_and_fails_waiting_requests() -> None:
    clock = ManualClock()
    before = _others()
    backend = MemoryBackend(clock=clock)
    await backend.connect()
    await backend.provision(StreamSpec("S", ("s.>",)))
    await backend.provision(KVSpec("kv"))
    blocked = asyncio.Event()

    async def stuck(received: Received) -> None:
        await blocked.wait()

    await backend.subscribe(SubscriptionSpec("s.a", concurrency=3), stuck)
    await backend.subscribe(SubscriptionSpec("c.a", mode=AMO), stuck)
    await backend.subscribe(SubscriptionSpec("s.b", durable="d", queue="d"), Deliveries())
    await backend.publish("s.a", {}, b"x")
    request = asyncio.create_task(backend.request("c.a", {}, b"?", timeout=60))
    watch = (await backend.kv("kv")).watch()
    await clock.settle()
    assert len(_others() - before) == 3 + 1 + 1 + 1  # workers and the request
    await asyncio.wait_for(backend.close(), 2.0)
    with pytest.raises(BackendClosed):
        await asyncio.wait_for(request, 2.0)
    assert _others() - before == set()
    assert [e async for e in watch] == []
    assert clock.pending == 0  # no timer left behind either
    await backend.close()  # idempotent


async def test_nothing_is_left_pending_after_close() -> None:
    # "Task was destroyed but it is pending" goes to the loop's exception handler.
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: reported.append(context))
    try:
        before = _others()
        async with MemoryBackend(clock=ManualClock()) as backend:
            await backend.subscribe(SubscriptionSpec("c.a", mode=AMO, concurrency=4), Deliveries())
            await backend.publish("c.a", {}, b"x", mode=AMO)
        assert _others() - before == set()
        del backend
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert reported == []


async def test_operations_need_an_open_backend() -> None:
    backend = MemoryBackend()
    with pytest.raises(BackendClosed, match="not connected"):
        await backend.publish("c.a", {}, b"x", mode=AMO)
    await backend.connect()
    await backend.connect()  # idempotent
    await backend.provision(StreamSpec("S", ("s.>",)))
    await backend.close()
    for operation in (
        backend.publish("s.a", {}, b"x"),
        backend.subscribe(SubscriptionSpec("s.a"), Deliveries()),
        backend.request("c.a", {}, b"x", timeout=1),
        backend.provision(StreamSpec("T", ("t.>",))),
        backend.kv("kv"),
    ):
        with pytest.raises(BackendClosed, match="closed"):
            await operation
    with pytest.raises(BackendClosed, match="make a new MemoryBackend"):
        await backend.connect()
    assert backend.stream_info("S").messages == 0  # inspection still works


async def test_every_capability_is_declared() -> None:
    caps = MemoryBackend.capabilities
    assert all(getattr(caps, f.name) for f in fields(Capabilities))
    assert caps.missing(Capabilities(**{f.name: True for f in fields(Capabilities)})) == []
    assert MemoryBackend.name == "memory"


def test_the_hookimpl_registers_the_backend_like_an_adapter() -> None:
    pm = pluggy.PluginManager("aclbus")
    pm.add_hookspecs(hookspecs)
    pm.register(memory)
    pm.check_pending()
    registered: dict[str, object] = {}
    pm.hook.aclbus_register_backends(register=registered.__setitem__)
    assert registered == {"memory": MemoryBackend}


def test_settings_seed_and_faults_are_read_from_settings() -> None:
    settings = SimpleNamespace(memory=SimpleNamespace(seed=7, faults=SimpleNamespace(delay=0.5)))
    backend = MemoryBackend(settings)
    assert backend.fault_injector.seed == 7
    assert backend.fault_injector.faults == Faults(delay=0.5)
    explicit = MemoryBackend(settings, seed=0, faults=Faults())
    assert explicit.fault_injector.seed == 0
    assert not explicit.fault_injector.active
    assert MemoryBackend(object()).fault_injector.seed == 0


async def test_describe_reports_streams_consumers_and_buckets() -> None:
    clock = ManualClock()
    async with MemoryBackend(clock=clock, faults=Faults(duplicate=0.1), seed=5) as backend:
        await backend.provision(StreamSpec("S", ("s.>",)))
        await backend.provision(KVSpec("kv", ttl=5))
        await backend.subscribe(SubscriptionSpec("s.a", durable="svc"), Deliveries(settle=None))
        await backend.publish("s.a", {}, b"x")
        await backend.publish("s.b", {}, b"y")
        await clock.settle()
        facts = await backend.describe()
    json.dumps(facts)  # ready for `aclbus doctor --json`
    assert facts["backend"] == "memory"
    assert facts["clock"] == "ManualClock"
    stream = facts["streams"]["S"]
    assert (stream["messages"], stream["first_seq"], stream["last_seq"]) == (2, 1, 2)
    assert stream["consumers"]["svc"]["num_ack_pending"] == 1
    assert facts["kv"]["kv"]["ttl"] == 5
    assert facts["faults"]["seed"] == 5
    assert facts["faults"]["enabled"] is True


async def test_request_reply_on_the_manual_clock() -> None:
    clock = ManualClock()
    async with MemoryBackend(clock=clock) as backend:
        with pytest.raises(NoResponders) as caught:
            await backend.request("svc.echo", {}, b"ping", timeout=5)
        assert caught.value.subject == "svc.echo"
        seen: list[str | None] = []

        async def echo(received: Received) -> None:
            seen.append(received.reply)
            assert received.reply is not None
            await backend.publish(received.reply, {"h": "1"}, b"re:" + received.body, mode=AMO)

        await backend.subscribe(SubscriptionSpec("svc.*", mode=AMO, queue="echo"), echo)
        reply = await asyncio.wait_for(backend.request("svc.echo", {}, b"ping", timeout=5), 1)
        assert (reply.body, dict(reply.headers)) == (b"re:ping", {"h": "1"})
        assert seen[0] is not None
        assert seen[0].startswith("_INBOX.")
        assert reply.subject == seen[0]

        await backend.subscribe(SubscriptionSpec("mute.x", mode=AMO), Deliveries())
        await backend.subscribe(SubscriptionSpec("mute.x", mode=AMO), Deliveries())
        pending = asyncio.create_task(backend.request("mute.x", {}, b"?", timeout=3))
        await clock.advance(2.9)
        assert not pending.done()
        await clock.advance(0.1)
        with pytest.raises(RequestTimeout) as timed_out:
            await pending
        assert (timed_out.value.subject, timed_out.value.timeout) == ("mute.x", 3)
        assert clock.pending == 0


async def test_published_headers_are_a_snapshot() -> None:
    clock = ManualClock()
    async with MemoryBackend(clock=clock) as backend:
        await backend.provision(StreamSpec("S", ("s.>",)))
        headers = {"k": "before"}
        await backend.publish("s.a", headers, bytearray(b"body"))  # type: ignore[arg-type]
        headers["k"] = "after"
        got = Deliveries()
        await backend.subscribe(SubscriptionSpec("s.a"), got)
        await clock.settle()
        [received] = got.items
        assert received.headers["k"] == "before"
        assert type(received.body) is bytes
        with pytest.raises(TypeError):
            received.headers["k"] = "changed"  # type: ignore[index]
