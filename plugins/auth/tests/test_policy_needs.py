"""The rendered permissions are what a bus needs, on a real nats-server and on memory.

Nothing a bus does under its policy is refused: the shared buckets (directory, presence,
groups), a shared map, joining any group (``join = ["*"]``), consuming another agent's inbox
(``consume``), each from an agent's bus connected as its own user.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from aclbus.acl import ACLMessage
from aclbus.backend import Backend, SubscriptionSpec
from aclbus.backends.memory import MemoryBackend, MemoryServer
from aclbus.bus import Bus
from aclbus.settings import Settings, StreamLimits
from aclbus.testing.collector import Deliveries
from aclbus_auth import AuthPlugin
from aclbus_auth.policy import load_policy, render_nats_conf
from aclbus_auth.settings import AuthSettings
from aclbus_nats.backend import NatsBackend
from aclbus_nats.server import EmbeddedServer
from aclbus_nats.settings import NatsSettings

PREFIX = "pn"
PASSWORDS = {user: f"pw-{user}-{uuid.uuid4().hex}" for user in ("admin", "scout", "helper")}

POLICY = f"""
prefix = "{PREFIX}"

[users.admin]
password = "$PN_ADMIN"
admin = true

[users.scout]
password = "$PN_SCOUT"
agents = ["scout"]

[users.helper]
password = "$PN_HELPER"
agents = ["helper"]

[agents.scout]
send = ["helper", "scout"]
groups = ["*"]
join = ["*"]
consume = ["helper"]
shared_maps = ["cache"]

[agents.helper]
"""


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("policy") / "policy.toml"
    path.write_text(POLICY)
    return path


@pytest.fixture(scope="module")
def server(policy_file: Path) -> Iterator[EmbeddedServer]:
    with pytest.MonkeyPatch.context() as env:
        for user, password in PASSWORDS.items():
            env.setenv(f"PN_{user.upper()}", password)
        rendered = render_nats_conf(load_policy(policy_file))
        with EmbeddedServer(server_name="aclbus-policy-needs", extra_config=rendered) as running:
            yield running


@pytest.fixture(params=["memory", "nats"])
def make_bus(request: pytest.FixtureRequest, policy_file: Path) -> Callable[[str], Bus]:
    """Makes each user's bus: on one shared memory server, or on the policy's nats-server."""
    settings = Settings(
        subject_prefix=PREFIX,
        request_timeout=5.0,
        streams=StreamLimits(max_bytes=1 << 20, storage="memory"),
    )
    memory = MemoryServer()

    def make(user: str) -> Bus:
        backend: Backend
        if request.param == "memory":
            backend = MemoryBackend(server=memory)
        else:
            server: EmbeddedServer = request.getfixturevalue("server")
            nats = NatsSettings(servers=[server.url])
            backend = NatsBackend(settings.model_copy(update={"backend": "nats"}), nats=nats)
        plugin = AuthPlugin(
            AuthSettings(user=user, password=PASSWORDS[user], policy_file=policy_file)
        )
        return Bus(settings, backend=backend, plugins=[plugin], entry_points=False)

    return make


@pytest_asyncio.fixture
async def admin(make_bus: Callable[[str], Bus]) -> AsyncIterator[Bus]:
    async with make_bus("admin") as bus:  # provisions the streams
        yield bus


@pytest.mark.usefixtures("admin")
async def test_buckets_groups_and_another_inbox_need_nothing_the_server_refuses(
    make_bus: Callable[[str], Bus], caplog: pytest.LogCaptureFixture
) -> None:
    """On memory a refusal would raise; on NATS it is also logged, and nothing may be."""
    caplog.set_level(logging.WARNING, logger="aclbus.nats")
    scout_bus = make_bus("scout")
    scout = scout_bus.agent("scout")
    async with scout_bus:
        # helper's inbox, through helper's own consumer (scout's `consume` grant)
        inbox = Deliveries()
        await scout_bus.backend.subscribe(
            SubscriptionSpec(
                subject=f"{PREFIX}.agent.helper",
                durable=f"{PREFIX}-agent-helper",
                queue=f"{PREFIX}-agent-helper",
            ),
            inbox,
        )
        cache = scout_bus.shared_map("cache")
        await cache.put("k", {"v": 1})
        assert await cache.get("k") == {"v": 1}
        assert await cache.keys() == ["k"]
        await scout_bus.directory.register({"agent_id": "scout", "skills": ["look"]})
        assert [d.agent_id for d in await scout_bus.directory.search(skill="look")] == ["scout"]
        for group in ("alpha", "beta"):
            await scout.join(group)
        await scout_bus.multicast("alpha", ACLMessage(performative="inform", sender_id="scout"))
        assert "scout" in await scout_bus.group_members("alpha")
        await scout.leave("beta")
        sent = ACLMessage(performative="inform", sender_id="scout", receiver_id="helper")
        await scout_bus.send(sent)
        [first] = await inbox.wait_for(1)
        assert first.headers["ce-id"] == sent.message_id
    violations = [r.getMessage() for r in caplog.records if "violation" in r.getMessage()]
    assert violations == []
