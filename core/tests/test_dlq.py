from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aclbus import ACLMessage, Bus, Delivery, Performative, Received, Settings
from aclbus.dlq import Reason, redact
from aclbus.errors import MalformedHeaders
from aclbus.subjects import TrafficClass
from aclbus.wire import ParsedHeaders, encode

WAIT = 5.0


def _msg(**fields: Any) -> ACLMessage:
    values: dict[str, Any] = {"performative": Performative.REQUEST, "sender_id": "cli"}
    values.update(fields)
    return ACLMessage(**values)


async def _eventually(check: Any, timeout: float = WAIT) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_a_failing_handler_dead_letters_the_original_message() -> None:
    calls = 0
    async with Bus(Settings()) as bus:
        agent = bus.agent("worker")

        @agent.on(Performative.REQUEST)
        async def explode(msg: ACLMessage) -> None:
            nonlocal calls
            calls += 1
            raise RuntimeError("db down: password=hunter2")

        await agent.start()
        sent = _msg(receiver_id="worker", payload={"job": 7})
        await bus.send(sent)
        [letter] = await _eventually(lambda: bus.dead_letters.list())
        assert letter.origin == "worker"
        assert letter.reason == Reason.HANDLER_ERROR
        assert letter.attempts == 1
        assert letter.error_type == "RuntimeError"
        assert letter.error is not None
        assert "hunter2" not in letter.error
        assert "db down" in letter.error
        assert letter.handler is not None
        assert letter.handler.endswith("explode")
        assert letter.message_id == sent.message_id
        assert letter.stream == bus.subjects.stream(TrafficClass.INBOX)
        original = letter.message(bus)
        assert (original.payload, original.message_id) == ({"job": 7}, sent.message_id)
        assert bus.stats.dead_lettered == 1
        await asyncio.sleep(0.2)
    assert calls == 1  # terminated: never delivered again


async def test_malformed_and_expired_messages_are_dead_lettered() -> None:
    async with Bus(Settings()) as bus:
        agent = bus.agent("worker")

        @agent.on()
        async def handle(msg: ACLMessage) -> None:
            raise AssertionError("never called")

        await agent.start()
        headers, _ = encode(_msg(receiver_id="worker"), bus.codecs)
        await bus.backend.publish(bus.subjects.inbox("worker"), headers, b"{not json", msg_id="m1")
        stale = _msg(
            receiver_id="worker", ttl=1, timestamp=datetime.now(UTC) - timedelta(seconds=5)
        )
        await bus.send(stale)
        letters = await _eventually(lambda: _with_count(bus.dead_letters.list(), 2))
        reasons = {d.reason: d for d in letters}
        assert set(reasons) == {Reason.MALFORMED, Reason.EXPIRED}
        assert reasons[Reason.MALFORMED].body == b"{not json"
        assert reasons[Reason.MALFORMED].error_type == "ACLDecodeError"
        assert reasons[Reason.EXPIRED].message_id == stale.message_id


async def test_malformed_headers_are_dead_lettered_apart_and_never_replayed() -> None:
    """A name that is not a token, a second ``ce-source``: ``malformed-headers``. Replaying
    such a letter is refused: the agent would be sent something other than what it refused."""
    async with Bus(Settings()) as bus:
        agent = bus.agent("worker")
        got: list[ACLMessage] = []

        @agent.on()
        async def handle(msg: ACLMessage) -> None:
            got.append(msg)

        await agent.start()
        inbox = bus.subjects.inbox("worker")
        for extra in ({"bad name": "x"}, {"CE-SOURCE": "mallory"}):
            headers, body = encode(_msg(receiver_id="worker"), bus.codecs)
            await bus.backend.publish(inbox, {**headers, **extra}, body)
        await bus.send(_msg(receiver_id="worker"))
        letters = await _eventually(lambda: _with_count(bus.dead_letters.list(), 2))
        assert {d.reason for d in letters} == {Reason.MALFORMED_HEADERS}
        assert sorted((d.error or "").split(":")[0] for d in letters) == ["bad name", "ce-source"]
        for letter in letters:
            assert letter.error_type == "MalformedHeaders"
            with pytest.raises(MalformedHeaders):
                letter.message(bus)
            with pytest.raises(MalformedHeaders, match="is not replayed"):
                await bus.dead_letters.replay(letter.sequence)
        assert len(await bus.dead_letters.list()) == 2  # kept, for an operator to look at
        [good] = await _eventually(lambda: _ready(got))
        assert good.sender_id == "cli"


async def test_a_replay_to_another_agent_replaces_headers_written_in_any_case() -> None:
    """A Go client writes ``Acl-Receiver-Id``: the replay's own must not make it twice."""
    async with Bus(Settings()) as bus:
        spare = bus.agent("spare")
        got: list[ACLMessage] = []

        @spare.on()
        async def take(msg: ACLMessage) -> None:
            got.append(msg)

        await spare.start()
        headers, _ = encode(_msg(receiver_id="broken"), bus.codecs)
        go_case = {k.title(): v for k, v in headers.items()}
        go_case["Aclbus-Replay-Of"] = "1"
        await bus.backend.publish(bus.subjects.inbox("broken"), go_case, b"{not json")
        broken = bus.agent("broken")
        broken.on()(_noop)
        await broken.start()
        [letter] = await _eventually(lambda: bus.dead_letters.list())
        await bus.dead_letters.replay(letter.sequence, to="spare")
        [again] = await _eventually(lambda: _with_count(bus.dead_letters.list(origin="spare"), 1))
        assert again.reason == Reason.MALFORMED  # the body, still: not its headers
        assert again.replay_of == letter.sequence


async def test_what_a_block_reader_found_wrong_survives_the_dead_letter_queue() -> None:
    """A backend's `ParsedHeaders` defect (a repeat the mapping cannot show) is kept."""
    async with Bus(Settings()) as bus:
        headers, body = encode(_msg(receiver_id="worker"), bus.codecs)
        block = ParsedHeaders(headers)
        block.defect = MalformedHeaders("ce-source", "given more than once")
        received = _Stored(bus.subjects.inbox("worker"), block, body)
        await bus.dead_letters.add(received, origin="worker", reason=Reason.MAX_DELIVER, error=None)
        [letter] = await bus.dead_letters.list()
        assert letter.headers == headers  # what the mapping held, and besides:
        with pytest.raises(MalformedHeaders) as exc:
            letter.message(bus)
        assert (exc.value.field, exc.value.problem) == ("ce-source", "given more than once")
        with pytest.raises(MalformedHeaders):
            await bus.dead_letters.replay(letter.sequence)


class _Stored(Received):
    """A delivery as a backend that reads raw header blocks would make it."""

    async def _ack(self) -> None:
        return None

    async def _nack(self, delay: float | None) -> None:
        return None

    async def _term(self, reason: str | None) -> None:
        return None

    async def _in_progress(self) -> None:
        return None


async def test_expired_messages_can_be_dropped_instead() -> None:
    async with Bus(Settings(expired="drop")) as bus:
        agent = bus.agent("worker")
        agent.on()(_noop)
        await agent.start()
        await bus.send(
            _msg(receiver_id="worker", ttl=1, timestamp=datetime.now(UTC) - timedelta(seconds=5))
        )
        await _eventually(lambda: _true_if(bus.stats.expired == 1))
        assert await bus.dead_letters.list() == []


async def test_exhausted_deliveries_are_dead_lettered_through_the_advisory() -> None:
    # The handler never finishes (a hung or crashing process): the broker gives up after
    # max_deliver attempts and its MAX_DELIVERIES advisory brings the message to the DLQ.
    release = asyncio.Event()
    seen: list[int] = []
    settings = Settings(ack_wait=0.2, max_deliver=2, handler_concurrency=4)
    async with Bus(settings) as bus:
        agent = bus.agent("worker")

        @agent.on()
        async def hang(msg: ACLMessage, delivery: Delivery) -> None:
            seen.append(delivery.attempt)
            await release.wait()

        await agent.start()
        sent = _msg(receiver_id="worker")
        await bus.send(sent)
        [letter] = await _eventually(lambda: bus.dead_letters.list())
        release.set()
        assert letter.reason == Reason.MAX_DELIVER
        assert letter.attempts == 2
        assert letter.origin == "worker"
        assert letter.message_id == sent.message_id
        assert sorted(seen) == [1, 2]


async def test_replay_sends_it_back_with_a_link_and_a_new_budget() -> None:
    fixed = False
    handled: list[Delivery] = []
    async with Bus(Settings()) as bus:
        agent = bus.agent("worker")

        @agent.on()
        async def handle(msg: ACLMessage, delivery: Delivery) -> None:
            if not fixed:
                raise ValueError("bug")
            handled.append(delivery)

        await agent.start()
        sent = _msg(receiver_id="worker", payload="again")
        await bus.send(sent)
        [letter] = await _eventually(lambda: bus.dead_letters.list())
        fixed = True
        await bus.dead_letters.replay(letter.sequence)
        [delivery] = await _eventually(lambda: _ready(handled))
        assert delivery.message.message_id == sent.message_id
        assert delivery.message.headers["aclbus-replay-of"] == str(letter.sequence)
        assert delivery.attempt == 1  # a new attempt budget
        assert await bus.dead_letters.list() == []  # replayed, so removed
        with pytest.raises(KeyError):
            await bus.dead_letters.get(letter.sequence)


async def test_replay_to_another_agent_and_purge() -> None:
    async with Bus(Settings()) as bus:
        broken, spare = bus.agent("broken"), bus.agent("spare")
        got: list[ACLMessage] = []

        @broken.on()
        async def fail(msg: ACLMessage) -> None:
            raise KeyError("x")

        @spare.on()
        async def take(msg: ACLMessage) -> None:
            got.append(msg)

        await broken.start()
        await spare.start()
        for i in range(3):
            await bus.send(_msg(receiver_id="broken", payload=i))
        letters = await _eventually(lambda: _with_count(bus.dead_letters.list(), 3))
        await bus.dead_letters.replay(letters[0].sequence, to="spare", remove=False)
        [moved] = await _eventually(lambda: _ready(got))
        assert moved.payload == 0
        assert moved.receiver_id == "spare"
        assert len(await bus.dead_letters.list()) == 3  # kept
        assert await bus.dead_letters.purge(letters[0].sequence) == 1
        assert await bus.dead_letters.purge(letters[0].sequence) == 0
        assert await bus.dead_letters.purge(origin="spare") == 0
        assert await bus.dead_letters.purge(origin="broken") == 2
        assert await bus.dead_letters.list() == []


async def test_a_dead_letter_that_cannot_be_stored_is_not_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = 0
    async with Bus(Settings(ack_wait=0.2)) as bus:
        agent = bus.agent("worker")

        @agent.on()
        async def explode(msg: ACLMessage) -> None:
            nonlocal calls
            calls += 1
            raise RuntimeError("boom")

        original_add = bus.dead_letters.add
        failures = 0

        async def flaky_add(*args: Any, **kwargs: Any) -> Any:
            nonlocal failures
            if failures == 0:
                failures += 1
                raise ConnectionError("DLQ unavailable")
            return await original_add(*args, **kwargs)

        monkeypatch.setattr(bus.dead_letters, "add", flaky_add)
        await agent.start()
        await bus.send(_msg(receiver_id="worker"))
        [letter] = await _eventually(lambda: bus.dead_letters.list())
        assert letter.attempts == 2  # redelivered after the failed store, then stored
        assert calls == 2


def test_redact_masks_common_secrets() -> None:
    text = redact(
        "connect nats://app:s3cret@db:4222 failed; password=hunter2 token: abc "
        "Authorization=Bearer xyz.123\nnext line"
    )
    for secret in ("s3cret", "hunter2", "abc", "xyz.123"):
        assert secret not in text
    assert "nats://***@db:4222" in text
    assert "\n" not in text
    assert len(redact("x" * 2000)) == 500


async def _noop(msg: ACLMessage) -> None:
    return None


async def _with_count(pending: Any, count: int) -> Any:
    items = await pending
    return items if len(items) >= count else None


async def _true_if(value: bool) -> bool:
    return value


async def _ready(items: list[Any]) -> list[Any] | None:
    return list(items) if items else None
