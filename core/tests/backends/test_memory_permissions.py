"""The memory backend held to `Permissions`: what nats-server would refuse, refused at once."""

from __future__ import annotations

import pytest

from aclbus.backend import DeliveryMode, Received, StreamSpec, SubscriptionSpec
from aclbus.backends.memory import MemoryBackend, MemoryServer
from aclbus.errors import PermissionDenied
from aclbus.permissions import Permissions, ResponsePermission, SubjectRules
from aclbus.testing.collector import Deliveries

AMO = DeliveryMode.AT_MOST_ONCE


def test_deny_wins_and_an_empty_allow_list_allows_everything() -> None:
    rules = SubjectRules(deny=("a.secret",))
    assert rules.permits("a.public")
    assert not rules.permits("a.secret")
    narrow = SubjectRules(allow=("a.>",), deny=("a.b.*",))
    assert narrow.permits("a.x")
    assert not narrow.permits("a.b.c")
    assert not narrow.permits("z")


def test_a_wildcard_subscription_is_allowed_only_when_an_allow_covers_it() -> None:
    rules = SubjectRules(allow=("_INBOX.*.*", "t.jobs.*"), deny=("t.jobs.secret",))
    assert rules.permits_filter("_INBOX.abc.*")
    assert not rules.permits_filter("_INBOX.>")
    assert rules.permits_filter("t.jobs.*")
    assert not rules.permits_filter("t.jobs.>")
    assert not rules.permits_filter("t.jobs.secret")


async def test_publish_subscribe_and_consumers_follow_the_rules() -> None:
    server = MemoryServer()
    async with MemoryBackend(server=server) as admin:
        await admin.provision(StreamSpec("S", ("s.>",)))
    backend = MemoryBackend(server=server)
    backend.enforce(
        Permissions(
            "me",
            publish=SubjectRules(
                allow=("s.mine", "$JS.API.CONSUMER.CREATE.S.mine.s.mine"),
            ),
            subscribe=SubjectRules(allow=("core.ok", "_INBOX.aclbus.S.mine")),
        )
    )
    async with backend:
        await backend.publish("s.mine", {}, b"x")
        with pytest.raises(PermissionDenied) as caught:
            await backend.publish("s.other", {}, b"x")
        assert (caught.value.operation, caught.value.subject) == ("publish", "s.other")
        with pytest.raises(PermissionDenied, match=r"'core\.no'"):
            await backend.subscribe(SubscriptionSpec("core.no", mode=AMO), Deliveries())
        await backend.subscribe(SubscriptionSpec("core.ok", mode=AMO), Deliveries())
        sub = await backend.subscribe(SubscriptionSpec("s.mine", durable="mine"), Deliveries())
        await sub.unsubscribe()
        with pytest.raises(PermissionDenied) as caught:
            await backend.subscribe(SubscriptionSpec("s.other", durable="mine"), Deliveries())
        assert (caught.value.operation, caught.value.subject) == ("subscribe", "s.other")
        for refused in (
            backend.get_message("S", 1),
            backend.read_stream("S"),
            backend.purge_stream("S"),
            backend.delete_message("S", 1),
            backend.delete_consumer("S", "mine"),
            backend.provision(StreamSpec("T", ("t.>",))),
        ):
            with pytest.raises(PermissionDenied):
                await refused
    backend.enforce(None)  # lifted: nothing is checked any more
    async with MemoryBackend(server=server) as free:
        free.enforce(None)
        await free.publish("s.other", {}, b"x")


async def test_a_reply_is_allowed_to_the_connection_the_request_went_to() -> None:
    server = MemoryServer()
    responses = ResponsePermission()
    replier = MemoryBackend(server=server)
    replier.enforce(
        Permissions("r", SubjectRules(allow=("nothing",)), SubjectRules(), responses=responses)
    )
    other = MemoryBackend(server=server)
    other.enforce(
        Permissions("o", SubjectRules(allow=("nothing",)), SubjectRules(), responses=responses)
    )
    async with MemoryBackend(server=server) as asker, replier, other:
        forged: list[BaseException] = []

        async def answer(received: Received) -> None:
            reply = received.reply
            assert reply is not None
            try:
                await other.publish(reply, {}, b"forged", mode=AMO)
            except PermissionDenied as exc:
                forged.append(exc)
            await replier.publish(reply, {}, b"pong", mode=AMO)

        await replier.subscribe(SubscriptionSpec("svc", mode=AMO), answer)
        got = await asker.request("svc", {}, b"ping", timeout=2.0)
        assert got.body == b"pong"
        assert len(forged) == 1
        assert "publish" in str(forged[0])
