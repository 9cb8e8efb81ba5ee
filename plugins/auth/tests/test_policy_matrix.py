"""One policy, two enforcers: the memory backend and a nats-server started from the render.

Each agent runs on a `Bus` of its own, connected as its own user (on NATS with its own
password, on memory as one connection of a shared `MemoryServer`), with the auth plugin's
`AuthPlugin`. Every allowed operation works; every denied one fails within 1 s with
`PermissionDenied` naming the operation and the subject, on both backends. nats-py lower-cases
the server's error text, so subjects are compared without regard to case.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from aclbus.acl import ACLMessage
from aclbus.backend import Backend, DeliveryMode, SubscriptionSpec
from aclbus.backends.memory import MemoryBackend, MemoryServer
from aclbus.bus import Bus
from aclbus.errors import PermissionDenied
from aclbus.handling import Delivery
from aclbus.settings import Settings, StreamLimits
from aclbus.testing.collector import Collector, Deliveries
from aclbus_auth import AuthPlugin
from aclbus_auth.policy import load_policy, render_nats_conf
from aclbus_auth.settings import AuthSettings
from aclbus_nats.backend import NatsBackend
from aclbus_nats.server import EmbeddedServer
from aclbus_nats.settings import NatsSettings

PREFIX = "pm"
FAST = 1.0  # a refusal comes within this many seconds
TIMEOUT = 5.0  # the publish and request timeouts a refusal must beat
USERS = ("admin", "coordinator", "worker-1", "worker-2", "auditor")
PASSWORDS = {user: f"pw-{user}-{uuid.uuid4().hex}" for user in USERS}


def _env(user: str) -> str:
    return f"PM_{user.upper().replace('-', '_')}_PASSWORD"


POLICY = f"""
prefix = "{PREFIX}"

[users.admin]
password = "${_env("admin")}"
admin = true

[users.coordinator]
password = "${_env("coordinator")}"
agents = ["coordinator"]

[users.worker-1]
password = "${_env("worker-1")}"
agents = ["worker-1"]

[users.worker-2]
password = "${_env("worker-2")}"
agents = ["worker-2"]

[users.auditor]
password = "${_env("auditor")}"
agents = ["auditor"]

[agents.coordinator]
send = ["*"]
groups = ["workers"]
publish = ["jobs.>"]
broadcast = true
request = ["worker-1", "worker-2"]

[agents.worker-1]
send = ["coordinator"]
join = ["workers"]
subscribe = ["jobs.>"]

[agents.worker-2]
send = ["coordinator"]

[agents.auditor]
dlq = "read"
"""


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("policy") / "policy.toml"
    path.write_text(POLICY)
    return path


@pytest.fixture(scope="module")
def nats_server(policy_file: Path) -> Iterator[EmbeddedServer]:
    """A nats-server whose authorization is the rendered policy, passwords from its env."""
    rendered = render_nats_conf(load_policy(policy_file))
    with pytest.MonkeyPatch.context() as env:
        for user, password in PASSWORDS.items():
            env.setenv(_env(user), password)
        with EmbeddedServer(server_name="aclbus-policy", extra_config=rendered) as running:
            yield running


@dataclass
class World:
    """Each user's bus, and what its agents received."""

    buses: dict[str, Bus]
    inbox: dict[str, Deliveries] = field(default_factory=dict)
    seen: dict[str, Collector[ACLMessage]] = field(default_factory=dict)
    replied_on: Collector[str] = field(default_factory=Collector)

    def backend(self, user: str) -> Backend:
        return self.buses[user].backend


def _settings() -> Settings:
    return Settings(
        backend="memory",
        subject_prefix=PREFIX,
        request_timeout=TIMEOUT,
        streams=StreamLimits(max_bytes=1 << 20, storage="memory"),
    )


def _plugin(policy_file: Path, user: str) -> AuthPlugin:
    """One user's credentials and policy: on NATS the password logs in, on memory the user
    name alone says whose permissions apply."""
    return AuthPlugin(AuthSettings(user=user, password=PASSWORDS[user], policy_file=policy_file))


@contextlib.asynccontextmanager
async def started_world(policy_file: Path, nats: EmbeddedServer | None) -> AsyncIterator[World]:
    """Every user's bus started (the admin's first), worker-1 in its group and on its topic."""
    settings = _settings()
    make: Callable[[str], Backend]
    if nats is None:
        server = MemoryServer()

        def make(user: str) -> Backend:
            return MemoryBackend(server=server)

    else:
        url = nats.url
        settings = settings.model_copy(update={"backend": "nats"})

        def make(user: str) -> Backend:
            return NatsBackend(
                settings,
                nats=NatsSettings(servers=[url], publish_timeout=TIMEOUT, connect_timeout=2.0),
            )

    buses: dict[str, Bus] = {}
    world = World(buses)
    try:
        for user in USERS:  # the admin first: it provisions what the others use
            bus = Bus(
                settings,
                backend=make(user),
                plugins=[_plugin(policy_file, user)],
                entry_points=False,
            )
            if user != "admin":
                _agent_of(world, bus, user)
            await bus.start()
            buses[user] = bus
        await buses["worker-1"].agent("worker-1").join("workers")
        await buses["worker-1"].agent("worker-1").subscribe("jobs.>")
        yield world
    finally:
        for bus in reversed(buses.values()):
            await bus.stop()


@pytest_asyncio.fixture(params=["memory", "nats"])
async def world(request: pytest.FixtureRequest, policy_file: Path) -> AsyncIterator[World]:
    nats = request.getfixturevalue("nats_server") if request.param == "nats" else None
    async with started_world(policy_file, nats) as running:
        yield running


def _agent_of(world: World, bus: Bus, agent_id: str) -> None:
    agent = bus.agent(agent_id)
    seen: Collector[ACLMessage] = Collector()
    world.seen[agent_id] = seen

    @agent.on("inform")
    async def inform(msg: ACLMessage) -> None:
        seen.add(msg)

    @agent.on("propose")
    async def refuse(msg: ACLMessage) -> None:
        raise RuntimeError("this handler fails: the message goes to the DLQ")

    @agent.on("request")
    async def answer(msg: ACLMessage, delivery: Delivery) -> ACLMessage:
        if delivery.received.reply:
            world.replied_on.add(delivery.received.reply)
        return msg.reply("inform", {"ok": agent_id})


def inform(sender: str, receiver: str | None = None, **fields: Any) -> ACLMessage:
    return ACLMessage(
        performative="inform",
        sender_id=sender,
        receiver_id=receiver,
        payload={"n": uuid.uuid4().hex},
        **fields,
    )


async def denied(operation: Awaitable[Any], op: str, subject: str) -> PermissionDenied:
    """Await ``operation``: it must fail with `PermissionDenied` on ``(op, subject)`` at once."""
    started = time.monotonic()
    with pytest.raises(PermissionDenied) as caught:
        await operation
    took = time.monotonic() - started
    assert took < FAST, f"refused after {took:.3f} s"
    assert caught.value.operation == op
    assert caught.value.subject.lower() == subject.lower()
    return caught.value


async def received(world: World, agent: str, msg: ACLMessage) -> None:
    """``agent`` got ``msg`` (other messages, left from earlier tests, may come too)."""
    seen = world.seen[agent]
    for _ in range(500):  # bounded: 5 s at most
        if any(m.message_id == msg.message_id for m in seen.items):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{agent} never got {msg.message_id}")


# -- allowed -------------------------------------------------------------------------------


async def test_send_to_an_agent_allowed(world: World) -> None:
    msg = inform("coordinator", "worker-1")
    await world.buses["coordinator"].send(msg)
    await received(world, "worker-1", msg)


async def test_send_to_a_group_allowed_and_a_member_gets_it(world: World) -> None:
    msg = inform("coordinator")
    await world.buses["coordinator"].multicast("workers", msg)
    await received(world, "worker-1", msg)


async def test_publish_on_a_topic_allowed_and_a_subscriber_gets_it(world: World) -> None:
    msg = inform("coordinator")
    await world.buses["coordinator"].publish(msg, topic="jobs.new")
    await received(world, "worker-1", msg)


async def test_request_a_granted_service_and_the_reply_comes_back(world: World) -> None:
    request = ACLMessage(performative="request", sender_id="coordinator", receiver_id="worker-1")
    reply = await world.buses["coordinator"].request(request)
    assert reply.payload == {"ok": "worker-1"}


async def test_the_auditor_reads_the_dlq(world: World) -> None:
    assert isinstance(await world.buses["auditor"].dead_letters.list(), list)


async def test_a_failed_message_is_dead_lettered_and_the_auditor_reads_it(world: World) -> None:
    msg = ACLMessage(performative="propose", sender_id="coordinator", receiver_id="worker-1")
    await world.buses["coordinator"].send(msg)
    for _ in range(500):  # bounded: 5 s at most
        letters = await world.buses["auditor"].dead_letters.list(origin="worker-1", limit=1000)
        if any(letter.message_id == msg.message_id for letter in letters):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the auditor never saw the dead letter")


async def test_dynamic_subscribe_and_unsubscribe_within_the_grant(world: World) -> None:
    worker = world.buses["worker-1"].agent("worker-1")
    await worker.unsubscribe("jobs.>")
    await worker.subscribe("jobs.>")
    msg = inform("coordinator")
    await world.buses["coordinator"].publish(msg, topic="jobs.again")
    await received(world, "worker-1", msg)


async def test_only_the_admins_bus_dead_letters_from_advisories(world: World) -> None:
    """The advisory path reads any agent's message by sequence: an admin's work."""
    assert world.buses["admin"]._advisories is not None
    for user in USERS[1:]:
        assert world.buses[user]._advisories is None, user


# -- denied --------------------------------------------------------------------------------


async def test_send_to_an_agent_not_granted(world: World) -> None:
    await denied(
        world.buses["worker-1"].send(inform("worker-1", "worker-2")),
        "publish",
        f"{PREFIX}.agent.worker-2",
    )
    # the connection is still good for what is allowed
    await world.buses["worker-1"].send(inform("worker-1", "coordinator"))


async def test_send_to_a_group_not_granted(world: World) -> None:
    await denied(
        world.buses["worker-1"].multicast("workers", inform("worker-1")),
        "publish",
        f"{PREFIX}.group.workers",
    )


async def test_publish_on_a_topic_not_granted(world: World) -> None:
    await denied(
        world.buses["worker-1"].publish(inform("worker-1"), topic="jobs.new"),
        "publish",
        f"{PREFIX}.topic.jobs.new",
    )


async def test_broadcast_not_granted(world: World) -> None:
    await denied(
        world.buses["worker-2"].broadcast(inform("worker-2")),
        "publish",
        f"{PREFIX}.broadcast",
    )


async def test_join_a_group_not_granted(world: World) -> None:
    await denied(
        world.buses["worker-2"].agent("worker-2").join("workers"),
        "subscribe",
        f"{PREFIX}.group.workers",
    )


async def test_request_a_service_not_granted(world: World) -> None:
    request = ACLMessage(performative="request", sender_id="worker-2", receiver_id="worker-1")
    await denied(world.buses["worker-2"].request(request), "publish", f"{PREFIX}.rpc.worker-1")


async def test_dynamic_subscribe_not_granted(world: World) -> None:
    await denied(
        world.buses["worker-2"].agent("worker-2").subscribe("jobs.>"),
        "subscribe",
        f"{PREFIX}.topic.jobs.>",
    )


async def test_consume_another_agents_inbox(world: World) -> None:
    """A consumer on worker-1's inbox: refused, under a new name or under worker-1's.

    (Under the name of worker-2's own inbox consumer, nats-py would bind to that consumer,
    which exists, whatever subject is asked: it would deliver worker-2's own messages.
    Memory refuses it; docs/security.md says so.)
    """
    spec = SubscriptionSpec(
        subject=f"{PREFIX}.agent.worker-1",
        durable=f"{PREFIX}-snoop-worker-2",
        queue=f"{PREFIX}-snoop-worker-2",
    )
    await denied(
        world.backend("worker-2").subscribe(spec, Deliveries()),
        "subscribe",
        f"{PREFIX}.agent.worker-1",
    )
    as_owner = SubscriptionSpec(
        subject=f"{PREFIX}.agent.worker-1",
        durable=f"{PREFIX}-agent-worker-1",
        queue=f"{PREFIX}-agent-worker-1",
    )
    await denied(
        world.backend("worker-2").subscribe(as_owner, Deliveries()),
        "subscribe",
        f"{PREFIX}.agent.worker-1",
    )


async def test_read_another_agents_messages_by_sequence(world: World) -> None:
    """MSG.GET on the inbox stream would read every agent's messages: refused."""
    msg = inform("coordinator", "worker-1")
    await world.buses["coordinator"].send(msg)
    stream = f"{PREFIX.upper()}_AGENT"
    api = f"$JS.API.STREAM.MSG.GET.{stream}"
    await denied(world.backend("worker-2").get_message(stream, 1), "publish", api)
    await denied(
        world.backend("worker-2").read_stream(stream, subject=f"{PREFIX}.agent.worker-1"),
        "publish",
        api,
    )


async def test_delete_or_purge_another_agents_messages_and_consumers(world: World) -> None:
    stream = f"{PREFIX.upper()}_AGENT"
    backend = world.backend("worker-2")
    await denied(backend.purge_stream(stream), "publish", f"$JS.API.STREAM.PURGE.{stream}")
    await denied(
        backend.delete_message(stream, 1), "publish", f"$JS.API.STREAM.MSG.DELETE.{stream}"
    )
    consumer = f"{PREFIX}-agent-worker-1"
    await denied(
        backend.delete_consumer(stream, consumer),
        "publish",
        f"$JS.API.CONSUMER.DELETE.{stream}.{consumer}",
    )


async def test_read_the_dlq_without_the_grant(world: World) -> None:
    await denied(
        world.buses["worker-2"].dead_letters.list(),
        "publish",
        f"$JS.API.STREAM.MSG.GET.{PREFIX.upper()}_DLQ",
    )


async def test_a_reply_sent_to_someone_elses_reply_subject(world: World) -> None:
    """worker-2 answers on the reply subject of a request it was never sent."""
    request = ACLMessage(performative="request", sender_id="coordinator", receiver_id="worker-1")
    await world.buses["coordinator"].request(request)
    [reply_subject] = (await world.replied_on.wait_for(1))[-1:]
    await denied(
        world.backend("worker-2").publish(
            reply_subject, {}, b"forged", mode=DeliveryMode.AT_MOST_ONCE
        ),
        "publish",
        reply_subject,
    )


async def test_subscribing_to_another_users_reply_inboxes(world: World) -> None:
    """worker-2 listens on the inboxes where coordinator's replies arrive: refused.

    On NATS each user's connection makes its inboxes under ``_INBOX_<user>`` (the policy's
    `Permissions.inbox_prefix`), the only inboxes it may subscribe to; an open ``_INBOX.*.*``
    would let any agent that learned an inbox id (by answering a request) read another
    connection's replies and JetStream answers.
    """
    request = ACLMessage(performative="request", sender_id="coordinator", receiver_id="worker-1")
    reply = await world.buses["coordinator"].request(request)
    assert reply.sender_id == "worker-1"
    [reply_subject] = (await world.replied_on.wait_for(1))[-1:]
    if world.backend("coordinator").name == "nats":
        assert reply_subject.startswith("_INBOX_coordinator.")
    inbox = reply_subject.rsplit(".", 1)[0] + ".*"
    for pattern in (inbox, "_INBOX.>", "_INBOX_coordinator.>"):
        spec = SubscriptionSpec(subject=pattern, mode=DeliveryMode.AT_MOST_ONCE)
        await denied(world.backend("worker-2").subscribe(spec, Deliveries()), "subscribe", pattern)


async def test_sending_as_another_agent_is_refused_before_the_wire(world: World) -> None:
    """The sender check: worker-2's bus may send only as worker-2, even where it may send."""
    error = await denied(
        world.buses["worker-2"].send(inform("worker-1", "coordinator")),
        "send as 'worker-1' (user 'worker-2')",
        f"{PREFIX}.agent.coordinator",
    )
    assert "worker-1" in str(error)


# -- on NATS only --------------------------------------------------------------------------


async def test_the_server_refuses_deleting_a_stream_and_direct_gets(
    nats_server: EmbeddedServer, policy_file: Path
) -> None:
    """Deleting a stream and a direct get are JetStream API requests the `Backend` contract
    does not make, so the memory backend has nothing to refuse: here they go straight to the
    server, on worker-2's connection, and are refused at once."""
    settings = _settings().model_copy(update={"backend": "nats"})
    backend = NatsBackend(
        settings,
        nats=NatsSettings(servers=[nats_server.url]),
    )
    plugin = _plugin(policy_file, "worker-2")
    options = plugin.aclbus_connection_options(settings)
    assert options is not None
    backend.configure_connection(options)
    backend.enforce(plugin.aclbus_connection_permissions(settings))  # its inbox prefix
    await backend.connect()
    try:
        connection = backend._connection
        nc, js = connection.require()
        stream = f"{PREFIX.upper()}_AGENT"
        for api, call in (
            (f"$JS.API.STREAM.DELETE.{stream}", js.delete_stream(stream)),
            (
                f"$JS.API.DIRECT.GET.{stream}",
                nc.request(f"$JS.API.DIRECT.GET.{stream}", b'{"seq": 1}', timeout=TIMEOUT),
            ),
            (
                f"$JS.API.DIRECT.GET.{stream}.{PREFIX}.agent.worker-1",
                nc.request(
                    f"$JS.API.DIRECT.GET.{stream}.{PREFIX}.agent.worker-1", b"", timeout=TIMEOUT
                ),
            ),
        ):
            await denied(connection.permissions.guard("publish", "$JS.API.>", call), "publish", api)
    finally:
        await backend.close()


async def test_buses_under_the_policy_ask_nothing_the_server_refuses(
    nats_server: EmbeddedServer, policy_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The rendered permissions are what the buses need: starting every agent, joining,
    subscribing, sending, requesting and reading the DLQ make no request the server refuses."""
    caplog.set_level(logging.WARNING, logger="aclbus.nats")
    async with started_world(policy_file, nats_server) as world:
        await world.buses["coordinator"].send(inform("coordinator", "worker-1"))
        await world.buses["coordinator"].multicast("workers", inform("coordinator"))
        await world.buses["coordinator"].publish(inform("coordinator"), topic="jobs.x")
        await world.buses["coordinator"].request(
            ACLMessage(performative="request", sender_id="coordinator", receiver_id="worker-1")
        )
        await world.buses["auditor"].dead_letters.list()
        await world.buses["worker-1"].agent("worker-1").leave("workers")
        await world.buses["worker-1"].agent("worker-1").join("workers")
    violations = [r.getMessage() for r in caplog.records if "violation" in r.getMessage()]
    assert violations == []
