from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aclbus import (
    ACLMessage,
    BackendClosed,
    Bus,
    ConfigurationError,
    Delivery,
    MessageTooLarge,
    Middleware,
    NoResponders,
    Performative,
    Settings,
    hookimpl,
)
from aclbus.wire import encode

WAIT = 5.0


def _msg(**fields: Any) -> ACLMessage:
    values: dict[str, Any] = {"performative": Performative.REQUEST, "sender_id": "cli"}
    values.update(fields)
    return ACLMessage(**values)


async def test_handlers_are_chosen_by_performative_and_message_type() -> None:
    seen: list[str] = []
    done = asyncio.Event()
    async with Bus(Settings()) as bus:
        agent = bus.agent("a")

        @agent.on(Performative.REQUEST, message_type="task.special")
        async def special(msg: ACLMessage) -> None:
            seen.append("special")

        @agent.on(Performative.REQUEST)
        async def any_request(msg: ACLMessage) -> None:
            seen.append("request")

        @agent.on()
        async def anything(msg: ACLMessage) -> None:
            seen.append(f"any:{msg.performative}")
            done.set()

        await agent.start()
        await bus.send(_msg(receiver_id="a", message_type="task.special"))
        await bus.send(_msg(receiver_id="a", message_type="task.other"))
        await bus.send(_msg(receiver_id="a", performative=Performative.INFORM))
        await asyncio.wait_for(done.wait(), WAIT)
    assert seen == ["special", "request", "any:inform"]


async def test_agents_and_handlers_come_and_go_while_running() -> None:
    async with Bus(Settings()) as bus:
        late = bus.agent("late")
        with pytest.raises(NoResponders):
            await bus.request(_msg(receiver_id="late"), timeout=WAIT)

        @late.on(Performative.REQUEST)
        async def first(msg: ACLMessage) -> ACLMessage:
            return msg.reply(Performative.INFORM, payload="first")

        await late.start()
        assert (await bus.request(_msg(receiver_id="late"), timeout=WAIT)).payload == "first"

        late.remove_handler(first)

        @late.on(Performative.REQUEST)
        async def second(msg: ACLMessage) -> ACLMessage:
            return msg.reply(Performative.INFORM, payload="second")

        assert (await bus.request(_msg(receiver_id="late"), timeout=WAIT)).payload == "second"

        await bus.remove_agent("late")
        with pytest.raises(NoResponders):
            await bus.request(_msg(receiver_id="late"), timeout=WAIT)


async def test_a_failing_request_handler_answers_failure_and_the_agent_lives_on() -> None:
    async with Bus(Settings()) as bus:
        agent = bus.agent("calc")

        @agent.on(Performative.REQUEST)
        async def divide(msg: ACLMessage) -> ACLMessage:
            return msg.reply(Performative.INFORM, payload=1 / msg.payload)

        await agent.start()
        failure = await bus.request(_msg(receiver_id="calc", payload=0), timeout=WAIT)
        assert failure.performative is Performative.FAILURE
        assert failure.payload["error"] == "ZeroDivisionError"
        ok = await bus.request(_msg(receiver_id="calc", payload=4), timeout=WAIT)
        assert ok.payload == 0.25
        assert bus.stats.failed == 1


async def test_unhandled_message_is_answered_not_understood() -> None:
    got: asyncio.Queue[ACLMessage] = asyncio.Queue()
    async with Bus(Settings()) as bus:
        picky = bus.agent("picky")

        @picky.on(Performative.CFP)
        async def cfp(msg: ACLMessage) -> None:
            return None

        sender = bus.agent("sender")

        @sender.on()
        async def inbox(msg: ACLMessage) -> None:
            await got.put(msg)

        await picky.start()
        await sender.start()
        original = _msg(sender_id="sender", receiver_id="picky", reply_with="q1")
        await bus.send(original)
        answer = await asyncio.wait_for(got.get(), WAIT)
    assert answer.performative is Performative.NOT_UNDERSTOOD
    assert answer.in_reply_to == "q1"
    assert answer.sender_id == "picky"


async def test_unsupported_major_version_is_answered_not_understood() -> None:
    got: asyncio.Queue[ACLMessage] = asyncio.Queue()
    async with Bus(Settings()) as bus:
        bus.agent("target")
        sender = bus.agent("sender")

        @sender.on()
        async def inbox(msg: ACLMessage) -> None:
            await got.put(msg)

        await bus.agent("target").start()
        await sender.start()
        headers, body = encode(_msg(sender_id="sender", receiver_id="target"), bus.codecs)
        headers["acl-version"] = "2.0"
        await bus.backend.publish(bus.subjects.inbox("target"), headers, body, msg_id="v2")
        answer = await asyncio.wait_for(got.get(), WAIT)
        assert answer.performative is Performative.NOT_UNDERSTOOD
        assert "acl-version" in answer.payload["reason"]
        assert bus.stats.decode_errors == 1


async def test_expired_messages_never_reach_a_handler() -> None:
    handled: list[Any] = []
    done = asyncio.Event()
    async with Bus(Settings()) as bus:
        agent = bus.agent("a")

        @agent.on()
        async def handle(msg: ACLMessage) -> None:
            handled.append(msg.payload)
            done.set()

        await agent.start()
        from datetime import UTC, datetime, timedelta

        old = datetime.now(UTC) - timedelta(seconds=10)
        await bus.send(_msg(receiver_id="a", payload="stale", ttl=1, timestamp=old))
        await bus.send(_msg(receiver_id="a", payload="fresh", ttl=60))
        await asyncio.wait_for(done.wait(), WAIT)
        assert bus.stats.expired == 1
    assert handled == ["fresh"]


async def test_each_receiver_of_a_multi_receiver_message_gets_it() -> None:
    got: dict[str, ACLMessage] = {}
    both = asyncio.Event()
    async with Bus(Settings()) as bus:
        for name in ("r1", "r2"):
            agent = bus.agent(name)

            @agent.on()
            async def handle(msg: ACLMessage, delivery: Delivery) -> None:
                got[delivery.agent] = msg
                if len(got) == 2:
                    both.set()

            await agent.start()
        acks = await bus.send(_msg(receivers=("r1", "r2")))
        await asyncio.wait_for(both.wait(), WAIT)
    assert [a.duplicate for a in acks] == [False, False]
    assert got["r1"].message_id == got["r2"].message_id


async def test_size_limit_and_missing_receiver_are_clear_errors() -> None:
    async with Bus(Settings(max_message_bytes=1000)) as bus:
        with pytest.raises(MessageTooLarge, match="over the limit of 1000 bytes"):
            await bus.send(_msg(receiver_id="a", payload="x" * 2000))
        with pytest.raises(ConfigurationError, match="receiver"):
            await bus.send(_msg())


async def test_using_a_stopped_bus_is_a_clear_error() -> None:
    bus = Bus(Settings())
    with pytest.raises(BackendClosed, match="not started"):
        await bus.send(_msg(receiver_id="a"))
    with pytest.raises(ConfigurationError, match="before its bus"):
        await bus.agent("a").start()


def test_handlers_must_be_async_with_one_or_two_parameters() -> None:
    agent = Bus(Settings()).agent("a")
    with pytest.raises(TypeError, match="async"):
        agent.on()(lambda msg: None)  # type: ignore[arg-type,return-value]

    async def three(a: object, b: object, c: object) -> None:
        return None

    with pytest.raises(TypeError, match=r"\(msg\) or \(msg, delivery\)"):
        agent.on()(three)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bogus"):
        agent.on("bogus")


async def test_requests_in_flight_are_bounded() -> None:
    active = 0
    peak = 0

    async def slow(msg: ACLMessage) -> ACLMessage:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.01)
        active -= 1
        return msg.reply(Performative.INFORM)

    async with Bus(Settings(max_requests_in_flight=2, handler_concurrency=8)) as bus:
        agent = bus.agent("svc")
        agent.on(Performative.REQUEST)(slow)
        await agent.start()
        replies = await asyncio.gather(
            *(bus.request(_msg(receiver_id="svc"), timeout=WAIT) for _ in range(8))
        )
    assert len(replies) == 8
    assert peak == 2


async def test_lifecycle_hooks_and_middleware_see_the_bus() -> None:
    events: list[str] = []

    class Tap(Middleware):
        async def publish(self, out, call_next):  # type: ignore[no-untyped-def, override]
            events.append(f"publish {out.subject}")
            return await call_next(out)

    class Plugin:
        @hookimpl
        def aclbus_middlewares(self, settings: Settings) -> list[Any]:
            return [lambda bus: Tap()]

        @hookimpl
        def aclbus_bus_started(self, bus: Bus) -> Any:
            async def started() -> None:
                events.append("started")

            return started()

        @hookimpl
        def aclbus_bus_stopping(self, bus: Bus) -> None:
            events.append("stopping")

    async with Bus(Settings(), plugins=[Plugin()]) as bus:
        await bus.send(_msg(receiver_id="nobody"))
    assert events == ["started", "publish aclbus.agent.nobody", "stopping"]


async def test_headers_added_by_middleware_count_towards_the_size_limit() -> None:
    class Fat(Middleware):
        async def publish(self, out, call_next):  # type: ignore[no-untyped-def, override]
            out.headers["x-fat"] = "y" * 600
            return await call_next(out)

    class Plugin:
        @hookimpl
        def aclbus_middlewares(self, settings: Settings) -> list[Any]:
            return [lambda bus: Fat()]

    async with Bus(Settings(max_message_bytes=1000), plugins=[Plugin()]) as bus:
        await bus.send(_msg(receiver_id="a", payload="x" * 100))
        with pytest.raises(MessageTooLarge):
            await bus.send(_msg(receiver_id="a", payload="x" * 500))


async def test_a_sealer_sees_the_encoded_message_and_its_headers_are_sent() -> None:
    """`Middleware.seal` runs after encoding: it sees the headers and body as they are sent."""
    sealed: list[tuple[dict[str, str], bytes]] = []

    class Stamp(Middleware):
        async def publish(self, out, call_next):  # type: ignore[no-untyped-def, override]
            out.headers["x-by-publish"] = "1"
            return await call_next(out)

    class Seal(Middleware):
        def __init__(self, name: str) -> None:
            self.name = name

        def seal(self, out: Any, headers: dict[str, str], body: bytes) -> None:
            sealed.append((dict(headers), body))
            headers[f"x-seal-{self.name}"] = f"{len(headers)}:{len(body)}"

    class Plugin:
        @hookimpl
        def aclbus_middlewares(self, settings: Settings) -> list[Any]:
            return [lambda bus: Seal("outer"), lambda bus: Stamp(), lambda bus: Seal("inner")]

    got: list[Delivery] = []
    bus = Bus(Settings(), plugins=[Plugin()])

    @bus.agent("a").on(Performative.REQUEST)
    async def handle(msg: ACLMessage, delivery: Delivery) -> None:
        got.append(delivery)

    async with bus:
        msg = _msg(receiver_id="a", payload={"k": "v"})
        await bus.send(msg)
        for _ in range(500):
            if got:
                break
            await asyncio.sleep(0.01)
    headers, body = encode(msg, bus.codecs)
    # the inner sealer first, with the envelope and the publish middleware's header; the
    # outer one after, seeing what the inner one added
    assert sealed[0] == ({**headers, "x-by-publish": "1"}, body)
    assert sealed[1][0]["x-seal-inner"] == f"{len(headers) + 1}:{len(body)}"
    (delivery,) = got
    assert delivery.received.body == body
    assert delivery.headers["x-seal-inner"] == f"{len(headers) + 1}:{len(body)}"
    assert delivery.headers["x-seal-outer"] == f"{len(headers) + 2}:{len(body)}"


async def test_headers_added_by_a_sealer_count_towards_the_size_limit() -> None:
    class Fat(Middleware):
        def seal(self, out: Any, headers: dict[str, str], body: bytes) -> None:
            headers["x-fat"] = "y" * 600

    class Plugin:
        @hookimpl
        def aclbus_middlewares(self, settings: Settings) -> list[Any]:
            return [lambda bus: Fat()]

    async with Bus(Settings(max_message_bytes=1000), plugins=[Plugin()]) as bus:
        await bus.send(_msg(receiver_id="a", payload="x" * 100))
        with pytest.raises(MessageTooLarge):
            await bus.send(_msg(receiver_id="a", payload="x" * 500))


def test_a_backend_given_by_name_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match=r"Settings\(backend='memory'\) chooses one by name"):
        Bus(backend="memory")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="backend= takes a Backend, not int"):
        Bus(backend=3)  # type: ignore[arg-type]
