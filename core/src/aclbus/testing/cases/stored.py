"""Stored messages: read, get, delete and purge what a stream holds.

The dead-letter queue lists, shows, replays and purges dead letters through exactly these
methods, and copies a message by sequence when a consumer gives it up; so a backend must
return what was published (headers, body, subject, sequence, a UTC time), skip what was
deleted or expired, and never deliver a deleted message again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, ClassVar

import pytest

from aclbus.backend import Backend, Capabilities, PublishAck, Received, SubscriptionSpec
from aclbus.errors import BackendClosed, ConfigurationError
from aclbus.testing.cases.base import AMO, BackendTestcase, publish_numbered
from aclbus.testing.collector import Collector, Deliveries

__all__ = ["StoredMessagesTestcase"]

MAX_DELIVERIES_ADVISORY = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"
"""Where a consumer reports giving up on a message: ``<prefix>.<stream>.<consumer>``."""


def _sequences(acks: list[PublishAck]) -> list[int]:
    """The stream sequences of ``at_least_once`` publishes."""
    seqs = [ack.sequence for ack in acks]
    assert None not in seqs, f"an at_least_once publish must return its sequence: {acks!r}"
    return [seq for seq in seqs if seq is not None]


class StoredMessagesTestcase(BackendTestcase):
    """``read_stream``, ``get_message``, ``delete_message`` and ``purge_stream``."""

    requires: ClassVar[Capabilities] = Capabilities(persistent=True)

    @property
    def stream_name(self) -> str:
        """The name of the stream the ``backend`` fixture provisioned."""
        return self.stream_spec().name

    # -- reading ---------------------------------------------------------------------------

    async def test_read_returns_messages_in_order_with_start_and_limit(
        self, backend: Backend
    ) -> None:
        """Every message in sequence order; ``start`` and ``limit`` page through them."""
        name, subject = self.stream_name, self.subject("read")
        seqs = _sequences(await publish_numbered(backend, subject, 5))
        got = await backend.read_stream(name)
        assert [m.body for m in got] == [b"0", b"1", b"2", b"3", b"4"]
        assert [m.sequence for m in got] == seqs
        assert {(m.stream, m.subject) for m in got} == {(name, subject)}
        page = await backend.read_stream(name, start=seqs[1], limit=2)
        assert [m.body for m in page] == [b"1", b"2"]
        rest = await backend.read_stream(name, start=page[-1].sequence + 1, limit=10)
        assert [m.body for m in rest] == [b"3", b"4"]
        assert await backend.read_stream(name, start=seqs[-1] + 1) == []
        assert await backend.read_stream(name, limit=0) == []

    async def test_read_filters_by_subject_with_wildcards(self, backend: Backend) -> None:
        """``subject`` selects by exact subject, ``*`` and ``>``; ``start`` still applies."""
        name = self.stream_name
        a1, b1 = self.subject("f", "a", "1"), self.subject("f", "b", "1")
        a2, other = self.subject("f", "a", "2"), self.subject("g", "x")
        for i, subject in enumerate((a1, b1, a2, other)):
            await backend.publish(subject, {}, str(i).encode())

        async def bodies(**kwargs: Any) -> list[bytes]:
            return [m.body for m in await backend.read_stream(name, **kwargs)]

        star = await backend.read_stream(name, subject=self.subject("f", "a", "*"))
        assert [(m.subject, m.body) for m in star] == [(a1, b"0"), (a2, b"2")]
        assert await bodies(subject=self.subject("f", ">")) == [b"0", b"1", b"2"]
        assert await bodies(subject=b1) == [b"1"]
        assert await bodies(subject=self.subject("f", "a", "*"), start=star[0].sequence + 1) == [
            b"2"
        ]
        assert await bodies(subject=self.subject("f", ">"), limit=1) == [b"0"]
        assert await bodies(subject=self.subject("nothing", ">")) == []

    async def test_get_returns_the_message_as_published(self, backend: Backend) -> None:
        """Headers, body, subject and sequence as published; a UTC time, in store order."""
        name, subject = self.stream_name, self.subject("get")
        headers = {"x-kind": "dead-letter", "x-note": "café ✓", "acl-performative": "inform"}
        [first] = _sequences([await backend.publish(subject, headers, b"payload", msg_id="m-1")])
        await self.advance(1.0)
        [second] = _sequences([await backend.publish(subject, {}, b"later")])
        stored = await backend.get_message(name, first)
        assert stored is not None
        assert (stored.stream, stored.sequence, stored.subject, stored.body) == (
            name,
            first,
            subject,
            b"payload",
        )
        assert {k: stored.headers.get(k) for k in headers} == headers
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in stored.headers.items())
        assert stored.time.utcoffset() == timedelta(0), "time must be timezone-aware UTC"
        later = await backend.get_message(name, second)
        assert later is not None
        assert later.body == b"later"
        assert timedelta(seconds=0.5) <= later.time - stored.time < timedelta(seconds=30)
        # What a consumer receives and what the stream returns carry the same headers.
        got = Deliveries()
        await backend.subscribe(SubscriptionSpec(subject), got)
        [delivered, _] = await got.wait_for(2)
        assert dict(delivered.headers) == dict(stored.headers)

    async def test_get_of_a_missing_sequence_is_none(self, backend: Backend) -> None:
        """A sequence never stored, or deleted, gives None."""
        name = self.stream_name
        ack = await backend.publish(self.subject("missing"), {}, b"x")
        assert ack.sequence is not None
        assert await backend.get_message(name, ack.sequence + 1000) is None
        assert await backend.delete_message(name, ack.sequence)
        assert await backend.get_message(name, ack.sequence) is None

    # -- deleting --------------------------------------------------------------------------

    async def test_delete_returns_true_then_false(self, backend: Backend) -> None:
        """The first delete removes the message; a second one, or one of nothing, is False."""
        name, subject = self.stream_name, self.subject("delete")
        seqs = _sequences(await publish_numbered(backend, subject, 3))
        assert await backend.delete_message(name, seqs[1]) is True
        assert await backend.delete_message(name, seqs[1]) is False
        assert await backend.delete_message(name, seqs[-1] + 1000) is False
        assert [m.body for m in await backend.read_stream(name)] == [b"0", b"2"]
        assert [m.body for m in await backend.read_stream(name, start=seqs[1])] == [b"2"]

    async def test_deleted_message_is_not_delivered(self, backend: Backend) -> None:
        """Deleted before anyone consumed it: a new consumer never sees it."""
        name, subject = self.stream_name, self.subject("undelivered")
        seqs = _sequences(await publish_numbered(backend, subject, 3))
        assert await backend.delete_message(name, seqs[1])
        got = Deliveries()
        await backend.subscribe(SubscriptionSpec(subject), got)
        await got.wait_for(2)
        await self.advance(0.5)
        assert got.bodies == [b"0", b"2"]

    async def test_consumer_skips_a_message_deleted_before_its_turn(self, backend: Backend) -> None:
        """A consumer held back by ``max_ack_pending`` goes on past the deleted message."""
        name, subject = self.stream_name, self.subject("held")
        got = Deliveries(settle=None)
        await backend.subscribe(SubscriptionSpec(subject, max_ack_pending=1, ack_wait=30.0), got)
        seqs = _sequences(await publish_numbered(backend, subject, 3))
        [first] = await got.wait_for(1)
        await self.advance(0.2)
        assert len(got) == 1, "max_ack_pending=1 must hold the next delivery back"
        assert await backend.delete_message(name, seqs[1])
        await first.ack()
        second = (await got.wait_for(2))[1]
        await second.ack()
        await self.advance(0.5)
        assert got.bodies == [b"0", b"2"]

    async def test_deleting_a_pending_message_stops_its_redelivery(self, backend: Backend) -> None:
        """Delivered, unacked, then deleted: not redelivered, not reported as exhausted.

        The dead-letter queue copies a message when its consumer gives up on it (the
        ``MAX_DELIVERIES`` advisory); a message deleted meanwhile must not be reported.
        """
        name, subject = self.stream_name, self.subject("pending")
        advisories: Collector[Received] = Collector()

        async def advised(received: Received) -> None:
            advisories.add(received)

        await backend.subscribe(
            SubscriptionSpec(f"{MAX_DELIVERIES_ADVISORY}.{name}.*", mode=AMO), advised
        )
        got = Deliveries(settle=None)
        await backend.subscribe(SubscriptionSpec(subject, ack_wait=1.0, max_deliver=2), got)
        await backend.publish(subject, {}, b"doomed")
        [first] = await got.wait_for(1)
        await first.nack()
        last = (await got.wait_for(2))[1]
        assert last.sequence is not None
        assert await backend.delete_message(name, last.sequence)
        await self.advance(2.5)
        assert got.bodies == [b"doomed", b"doomed"], "a deleted message was delivered again"
        assert advisories.items == [], "a deleted message was reported as exhausted"
        await backend.publish(subject, {}, b"next")
        after = (await got.wait_for(3))[2]
        assert after.body == b"next"
        await after.ack()

    # -- purging ---------------------------------------------------------------------------

    async def test_purge_removes_everything_and_counts(self, backend: Backend) -> None:
        """A purge returns how many it removed; sequences go on after it."""
        name = self.stream_name
        await publish_numbered(backend, self.subject("p", "a"), 2)
        [last] = _sequences(await publish_numbered(backend, self.subject("p", "b"), 1, start=2))
        assert await backend.purge_stream(name) == 3
        assert await backend.read_stream(name) == []
        [after] = _sequences([await backend.publish(self.subject("p", "a"), {}, b"after")])
        assert after > last
        assert [m.body for m in await backend.read_stream(name)] == [b"after"]
        assert await backend.purge_stream(name) == 1
        assert await backend.purge_stream(name) == 0

    async def test_purge_by_subject_leaves_the_rest(self, backend: Backend) -> None:
        """A purge by subject (exact or with wildcards) removes only what matches."""
        name = self.stream_name
        ax, ay, b = self.subject("p", "a", "x"), self.subject("p", "a", "y"), self.subject("p", "b")
        for i, subject in enumerate((ax, b, ay, ax)):
            await backend.publish(subject, {}, str(i).encode())
        assert await backend.purge_stream(name, subject=ax) == 2
        assert [m.body for m in await backend.read_stream(name)] == [b"1", b"2"]
        assert await backend.purge_stream(name, subject=self.subject("p", "a", "*")) == 1
        assert await backend.purge_stream(name, subject=self.subject("nothing", ">")) == 0
        assert [(m.subject, m.body) for m in await backend.read_stream(name)] == [(b, b"1")]

    # -- expiry and errors -----------------------------------------------------------------

    @pytest.mark.aclbus_requires("ttl")
    async def test_expired_message_is_not_returned(self, backend: Backend) -> None:
        """A message past its TTL is neither read, nor got, nor deleted."""
        name, subject = self.stream_name, self.subject("expired")
        short = await backend.publish(subject, {}, b"short", ttl=1.0)
        await backend.publish(subject, {}, b"forever")
        await self.advance(2.5)
        assert short.sequence is not None
        assert [m.body for m in await backend.read_stream(name)] == [b"forever"]
        assert await backend.get_message(name, short.sequence) is None
        assert await backend.delete_message(name, short.sequence) is False

    async def test_unknown_stream_is_a_configuration_error(self, backend: Backend) -> None:
        """Each method names the unknown stream, and the stream that does exist."""
        unknown = f"NOPE_{self.namespace.upper()}"
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: backend.read_stream(unknown),
            lambda: backend.get_message(unknown, 1),
            lambda: backend.delete_message(unknown, 1),
            lambda: backend.purge_stream(unknown),
        ]
        for call in calls:
            with pytest.raises(ConfigurationError, match=unknown) as caught:
                await call()
            assert self.stream_name in str(caught.value)

    async def test_not_connected_is_backend_closed(self) -> None:
        """Like every other method, they need a connected backend."""
        backend = self.make_backend()
        with pytest.raises(BackendClosed):
            await backend.read_stream(self.stream_name)
        with pytest.raises(BackendClosed):
            await backend.get_message(self.stream_name, 1)
        with pytest.raises(BackendClosed):
            await backend.delete_message(self.stream_name, 1)
        with pytest.raises(BackendClosed):
            await backend.purge_stream(self.stream_name)
