"""Streams: sequences, the dedup window, limits, TTLs and provisioning rules."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from aclbus.backend import DeliveryMode, StreamSpec, SubscriptionSpec
from aclbus.backends.memory import ManualClock, MemoryBackend
from aclbus.errors import (
    ConfigurationError,
    HeadersTooLarge,
    InvalidIdentifier,
    MessageTooLarge,
    NoStream,
    StreamFull,
)
from aclbus.testing.collector import Deliveries
from aclbus.wire import encoded_size

AMO = DeliveryMode.AT_MOST_ONCE


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def backend(clock: ManualClock) -> AsyncIterator[MemoryBackend]:
    async with MemoryBackend(clock=clock, max_payload=4096) as backend:
        yield backend


async def test_sequences_and_stream_info(backend: MemoryBackend) -> None:
    await backend.provision(StreamSpec("S", ("s.>",)))
    info = backend.stream_info("S")
    assert (info.messages, info.first_seq, info.last_seq) == (0, 1, 0)
    acks = [await backend.publish("s.a", {"k": "v"}, b"12345") for _ in range(3)]
    assert [(a.stream, a.sequence, a.duplicate) for a in acks] == [
        ("S", 1, False),
        ("S", 2, False),
        ("S", 3, False),
    ]
    info = backend.stream_info("S")
    assert (info.messages, info.first_seq, info.last_seq) == (3, 1, 3)
    assert info.bytes == 3 * encoded_size({"k": "v"}, b"12345")


async def test_dedup_window_edge(backend: MemoryBackend, clock: ManualClock) -> None:
    await backend.provision(StreamSpec("S", ("s.>",), duplicate_window=10.0))
    first = await backend.publish("s.a", {}, b"1", msg_id="m")
    await clock.advance(9.999)
    retry = await backend.publish("s.a", {}, b"retry", msg_id="m")
    assert (retry.duplicate, retry.sequence) == (True, first.sequence)
    await clock.advance(0.001)  # exactly the window later: a new message
    later = await backend.publish("s.a", {}, b"later", msg_id="m")
    assert (later.duplicate, later.sequence) == (False, 2)
    # The window now runs from the new message.
    again = await backend.publish("s.a", {}, b"again", msg_id="m")
    assert (again.duplicate, again.sequence) == (True, 2)
    assert backend.stream_info("S").messages == 2


async def test_duplicate_survives_discard_of_the_original(backend: MemoryBackend) -> None:
    await backend.provision(StreamSpec("S", ("s.>",), max_msgs=1, discard="old"))
    first = await backend.publish("s.a", {}, b"1", msg_id="m")
    await backend.publish("s.a", {}, b"2")
    retry = await backend.publish("s.a", {}, b"1", msg_id="m")
    assert (retry.duplicate, retry.sequence) == (True, first.sequence)


async def test_zero_duplicate_window_deduplicates_nothing(backend: MemoryBackend) -> None:
    await backend.provision(StreamSpec("S", ("s.>",), duplicate_window=0))
    acks = [await backend.publish("s.a", {}, b"x", msg_id="m") for _ in range(2)]
    assert [a.duplicate for a in acks] == [False, False]


async def test_max_msgs_discards_the_oldest(backend: MemoryBackend, clock: ManualClock) -> None:
    await backend.provision(StreamSpec("S", ("s.>",), max_msgs=3, discard="old"))
    for i in range(5):
        await backend.publish("s.a", {}, str(i).encode())
    info = backend.stream_info("S")
    assert (info.messages, info.first_seq, info.last_seq) == (3, 3, 5)
    got = Deliveries()
    await backend.subscribe(SubscriptionSpec("s.a"), got)
    await clock.settle()
    assert got.bodies == [b"2", b"3", b"4"]


async def test_max_bytes_discards_the_oldest(backend: MemoryBackend) -> None:
    size = encoded_size({}, b"x" * 100)
    await backend.provision(StreamSpec("S", ("s.>",), max_bytes=size * 2 + 1, discard="old"))
    for _ in range(4):
        await backend.publish("s.a", {}, b"x" * 100)
    info = backend.stream_info("S")
    assert (info.messages, info.bytes, info.first_seq) == (2, size * 2, 3)


async def test_message_over_max_bytes_alone_is_refused(backend: MemoryBackend) -> None:
    await backend.provision(StreamSpec("S", ("s.>",), max_bytes=50))
    with pytest.raises(MessageTooLarge) as caught:
        await backend.publish("s.a", {}, b"x" * 100)
    assert caught.value.limit == 50
    assert "'S'" in str(caught.value)


async def test_max_msg_size_counts_headers(backend: MemoryBackend) -> None:
    await backend.provision(StreamSpec("S", ("s.>",), max_msg_size=100))
    body = b"x" * 80
    await backend.publish("s.a", {}, body)  # 80 + 12 bytes of header block
    with pytest.raises(MessageTooLarge) as caught:
        await backend.publish("s.a", {"a-header": "with a value"}, body)
    assert caught.value.size == encoded_size({"a-header": "with a value"}, body)
    assert caught.value.limit == 100
    assert "'s.a'" in str(caught.value)
    assert backend.stream_info("S").messages == 1


async def test_max_payload_applies_to_every_publish(backend: MemoryBackend) -> None:
    assert backend.max_payload == 4096
    with pytest.raises(MessageTooLarge) as caught:
        await backend.publish("c.a", {}, b"x" * 4096, mode=AMO)
    assert (caught.value.size, caught.value.limit) == (4096 + 12, 4096)


async def test_a_stored_header_block_is_at_most_65535_bytes(clock: ManualClock) -> None:
    """As JetStream: a persistent message's header block is refused over 64 KiB - 1, before
    anything is stored, whatever ``max_payload`` allows; a core message has no such limit."""

    def block(size: int) -> dict[str, str]:
        return {"x-big": "v" * (size - encoded_size({"x-big": ""}, b""))}

    async with MemoryBackend(clock=clock) as backend:
        await backend.provision(StreamSpec("S", ("s.>",)))
        await backend.publish("s.a", block(65535), b"body")
        with pytest.raises(HeadersTooLarge) as caught:
            await backend.publish("s.a", block(65536), b"body")
        assert isinstance(caught.value, MessageTooLarge)
        assert (caught.value.size, caught.value.limit) == (65536, 65535)
        assert "'s.a'" in str(caught.value)
        assert "payload" in str(caught.value)
        assert backend.stream_info("S").messages == 1
        await backend.publish("c.a", block(70_000), b"", mode=AMO)


async def test_max_age_expires_messages(backend: MemoryBackend, clock: ManualClock) -> None:
    await backend.provision(StreamSpec("S", ("s.>",), max_age=10.0))
    await backend.publish("s.a", {}, b"old")
    await clock.advance(6)
    await backend.publish("s.a", {}, b"young")
    await clock.advance(4)
    info = backend.stream_info("S")
    assert (info.messages, info.first_seq) == (1, 2)
    got = Deliveries()
    await backend.subscribe(SubscriptionSpec("s.a"), got)
    await clock.settle()
    assert got.bodies == [b"young"]


async def test_expired_message_is_not_redelivered(
    backend: MemoryBackend, clock: ManualClock
) -> None:
    await backend.provision(StreamSpec("S", ("s.>",)))
    got = Deliveries(settle=None)
    await backend.subscribe(SubscriptionSpec("s.a", ack_wait=5), got)
    await backend.publish("s.a", {}, b"short", ttl=3.0)
    await clock.advance(30)
    assert got.attempts == [1]
    assert backend.stream_info("S").messages == 0


async def test_ttl_needs_allow_msg_ttl(backend: MemoryBackend) -> None:
    await backend.provision(StreamSpec("S", ("s.>",), allow_msg_ttl=False))
    with pytest.raises(ConfigurationError, match=r"'S'.*ttl=5"):
        await backend.publish("s.a", {}, b"x", ttl=5)
    await backend.provision(StreamSpec("T", ("t.>",)))
    with pytest.raises(ConfigurationError, match="TTL must be > 0 seconds, got 0"):
        await backend.publish("t.a", {}, b"x", ttl=0)
    assert backend.stream_info("S").messages == backend.stream_info("T").messages == 0


async def test_no_stream_names_the_subject(backend: MemoryBackend) -> None:
    await backend.provision(StreamSpec("S", ("s.>",)))
    with pytest.raises(NoStream) as caught:
        await backend.publish("elsewhere.a", {}, b"x")
    assert caught.value.subject == "elsewhere.a"
    with pytest.raises(NoStream):
        await backend.subscribe(SubscriptionSpec("elsewhere.>"), Deliveries())


async def test_overlapping_streams_are_refused(backend: MemoryBackend) -> None:
    await backend.provision(StreamSpec("A", ("orders.*.created",)))
    with pytest.raises(ConfigurationError, match=r"'orders\.eu\.\*'.*'A'"):
        await backend.provision(StreamSpec("B", ("orders.eu.*",)))
    await backend.provision(StreamSpec("C", ("orders.*.deleted",)))  # disjoint: fine


async def test_update_keeps_messages_and_applies_new_limits(backend: MemoryBackend) -> None:
    await backend.provision(StreamSpec("S", ("s.>",)))
    for i in range(5):
        await backend.publish("s.a", {}, str(i).encode())
    await backend.provision(StreamSpec("S", ("s.>", "more.>"), max_msgs=2, discard="old"))
    info = backend.stream_info("S")
    assert (info.messages, info.first_seq, info.subjects) == (2, 4, ("s.>", "more.>"))
    ack = await backend.publish("more.x", {}, b"new")
    assert (ack.stream, ack.sequence) == ("S", 6)


async def test_bad_specs_and_subjects_are_refused(backend: MemoryBackend) -> None:
    with pytest.raises(ConfigurationError, match="max_msgs=0"):
        await backend.provision(StreamSpec("S", ("s.>",), max_msgs=0))
    with pytest.raises(InvalidIdentifier, match="stream name"):
        await backend.provision(StreamSpec("bad.name", ("s.>",)))
    with pytest.raises(InvalidIdentifier, match="last token"):
        await backend.provision(StreamSpec("S", ("s.>.x",)))
    await backend.provision(StreamSpec("S", ("s.>",)))
    with pytest.raises(InvalidIdentifier, match="wildcard"):
        await backend.publish("s.*", {}, b"x")
    with pytest.raises(InvalidIdentifier, match="token 2 is empty"):
        await backend.publish("s..a", {}, b"x", mode=AMO)


async def test_compaction_keeps_sequences_right(backend: MemoryBackend, clock: ManualClock) -> None:
    # Enough discards to cut the front of the message list several times.
    await backend.provision(StreamSpec("S", ("s.>",), max_msgs=10, discard="old"))
    for i in range(5000):
        await backend.publish("s.a", {}, str(i).encode())
    info = backend.stream_info("S")
    assert (info.messages, info.first_seq, info.last_seq) == (10, 4991, 5000)
    got = Deliveries()
    await backend.subscribe(SubscriptionSpec("s.a"), got)
    await clock.settle()
    assert got.bodies == [str(i).encode() for i in range(4990, 5000)]
    assert [r.sequence for r in got.items] == list(range(4991, 5001))


async def test_full_stream_with_discard_new_refuses_and_keeps_everything(
    backend: MemoryBackend, clock: ManualClock
) -> None:
    await backend.provision(StreamSpec("S", ("s.>",), max_msgs=2, max_age=10))
    first = await backend.publish("s.a", {}, b"1", msg_id="m1")
    await backend.publish("s.a", {}, b"2")
    with pytest.raises(StreamFull, match=r"stream 'S' holds 2 messages"):
        await backend.publish("s.a", {}, b"3")
    # a retry of a stored message is still answered as a duplicate, not refused
    again = await backend.publish("s.a", {}, b"1", msg_id="m1")
    assert (again.duplicate, again.sequence) == (True, first.sequence)
    info = backend.stream_info("S")
    assert (info.messages, info.first_seq, info.last_seq) == (2, 1, 2)
    await clock.advance(11)  # expired messages make room
    ack = await backend.publish("s.a", {}, b"3")
    assert ack.sequence == 3


async def test_discard_new_counts_bytes_too(backend: MemoryBackend) -> None:
    size = encoded_size({}, b"x" * 100)
    await backend.provision(StreamSpec("S", ("s.>",), max_bytes=size * 2))
    for _ in range(2):
        await backend.publish("s.a", {}, b"x" * 100)
    with pytest.raises(StreamFull):
        await backend.publish("s.a", {}, b"x" * 100)
    assert backend.stream_info("S").bytes == size * 2
