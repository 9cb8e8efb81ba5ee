"""Server-enforced permissions and credentials (SCENARIOS 18, 19, 20) on a real nats-server.

nats-server reports a forbidden publish or subscribe only with an asynchronous ``-ERR``; nats-py
hands it to ``error_cb`` and would otherwise let the publish time out and the subscription stay
silently empty. aclbus turns each into `PermissionDenied` at once.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from aclbus.acl import ACLMessage
from aclbus.backend import DeliveryMode, SubscriptionSpec
from aclbus.bus import Bus
from aclbus.errors import AuthenticationError, BackendClosed, PermissionDenied
from aclbus.settings import Settings, StreamLimits
from aclbus.testing.collector import Deliveries
from aclbus_auth import AuthPlugin, AuthSettings
from aclbus_nats.backend import NatsBackend
from aclbus_nats.server import EmbeddedServer
from aclbus_nats.settings import NatsSettings

USER = "agent"
PASSWORD = "pw-" + uuid.uuid4().hex  # distinctive, so that a leak is found by a plain search
WRONG = "wrong-" + uuid.uuid4().hex
PREFIX = "perm"
TIMEOUT = 5.0  # publish and request timeout: a denial must come well before it
FAST = 1.0  # what "at once" means here

AUTHORIZATION = f"""
authorization {{
  users = [
    {{
      user: {USER}
      password: "{PASSWORD}"
      permissions: {{
        publish: {{
          deny: [
            "{PREFIX}.agent.forbidden"
            "{PREFIX}.agent.Boss"
            "{PREFIX}.rpc.forbidden"
            "$JS.API.CONSUMER.DURABLE.CREATE.PERM_AGENT.{PREFIX}-agent-nojs"
            "$JS.API.CONSUMER.CREATE.PERM_AGENT.{PREFIX}-agent-nojs.>"
          ]
        }}
        subscribe: {{ deny: ["{PREFIX}.rpc.secret", "{PREFIX}.private.>"] }}
      }}
    }}
  ]
}}
"""


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddedServer]:
    with EmbeddedServer(server_name="aclbus-perm", extra_config=AUTHORIZATION) as running:
        yield running


@pytest.fixture(autouse=True)
def no_secret_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every log record of every test here, at DEBUG and up, is free of both passwords."""
    caplog.set_level(logging.DEBUG)
    yield
    for record in caplog.records:
        text = record.getMessage() + (str(record.exc_info[1]) if record.exc_info else "")
        assert PASSWORD not in text, record
        assert WRONG not in text, record


def nats_settings(server: EmbeddedServer, **overrides: Any) -> NatsSettings:
    values: dict[str, Any] = {
        "servers": [server.url],
        "publish_timeout": TIMEOUT,
        "connect_timeout": 2.0,
    }
    values.update(overrides)
    return NatsSettings(**values)


def auth(**overrides: Any) -> AuthPlugin:
    """The auth plugin with ``USER`` and ``PASSWORD`` (``ACLBUS_AUTH__*``), or ``overrides``."""
    values: dict[str, Any] = {"user": USER, "password": PASSWORD}
    values.update(overrides)
    return AuthPlugin(AuthSettings(**values))


@pytest_asyncio.fixture
async def bus(server: EmbeddedServer) -> AsyncIterator[Bus]:
    settings = Settings(
        backend="nats",
        subject_prefix=PREFIX,
        request_timeout=TIMEOUT,
        streams=StreamLimits(max_bytes=1 << 20, storage="memory"),
    )
    backend = NatsBackend(settings, nats=nats_settings(server))
    async with Bus(settings, backend=backend, entry_points=False, plugins=[auth()]) as running:
        yield running


def inform(receiver: str) -> ACLMessage:
    return ACLMessage(performative="inform", sender_id="alice", receiver_id=receiver)


@pytest.mark.parametrize("receiver", ["forbidden", "Boss"])
async def test_unauthorised_persistent_publish_is_denied_at_once(bus: Bus, receiver: str) -> None:
    """SCENARIOS 18; ``Boss``: nats-py lower-cases the server's error text, subject included."""
    started = time.monotonic()
    with pytest.raises(PermissionDenied) as caught:
        await bus.send(inform(receiver))
    took = time.monotonic() - started

    assert took < FAST, f"denied after {took:.3f} s (publish timeout {TIMEOUT} s)"
    assert (caught.value.operation, caught.value.subject) == ("publish", f"perm.agent.{receiver}")
    assert f"perm.agent.{receiver}" in str(caught.value)
    # The connection is still good for what is allowed.
    [ack] = await bus.send(inform("allowed"))
    assert ack.stream == "PERM_AGENT"


async def test_unauthorised_request_is_denied_at_once(bus: Bus) -> None:
    started = time.monotonic()
    with pytest.raises(PermissionDenied) as caught:
        await bus.request(
            ACLMessage(performative="request", sender_id="alice", receiver_id="forbidden")
        )
    took = time.monotonic() - started

    assert took < FAST, f"denied after {took:.3f} s (request timeout {TIMEOUT} s)"
    assert (caught.value.operation, caught.value.subject) == ("publish", "perm.rpc.forbidden")


async def test_agent_whose_request_subscription_is_forbidden_does_not_start(bus: Bus) -> None:
    """SCENARIOS 19: the agent's start fails; no silent agent that never hears a request."""
    agent = bus.agent("secret")
    agent.on()(_ignore)

    started = time.monotonic()
    with pytest.raises(PermissionDenied) as caught:
        await agent.start()

    assert time.monotonic() - started < FAST
    assert (caught.value.operation, caught.value.subject) == ("subscribe", "perm.rpc.secret")
    assert not agent.started


async def test_agent_whose_inbox_consumer_is_forbidden_does_not_start(bus: Bus) -> None:
    """Making the JetStream consumer is forbidden: PermissionDenied, not the API's timeout."""
    agent = bus.agent("nojs")
    agent.on()(_ignore)

    started = time.monotonic()
    with pytest.raises(PermissionDenied) as caught:
        await agent.start()
    took = time.monotonic() - started

    assert took < FAST, f"denied after {took:.3f} s (JetStream API timeout {TIMEOUT} s)"
    assert (caught.value.operation, caught.value.subject) == ("subscribe", "perm.agent.nojs")
    assert "$js.api.consumer" in str(caught.value.__cause__).lower()  # what the server refused
    assert not agent.started


@pytest.mark.parametrize("queue", [None, "workers"])
async def test_forbidden_core_subscription_is_refused_and_removed(
    server: EmbeddedServer, queue: str | None
) -> None:
    backend = NatsBackend(Settings(subject_prefix=PREFIX), nats=nats_settings(server))
    # A backend used without a bus takes the plugin's options as the bus would hand them.
    options = auth().aclbus_connection_options(Settings())
    assert options is not None
    backend.configure_connection(options)
    await backend.connect()
    try:
        spec = SubscriptionSpec(
            subject=f"{PREFIX}.private.x", mode=DeliveryMode.AT_MOST_ONCE, queue=queue
        )
        with pytest.raises(PermissionDenied) as caught:
            await backend.subscribe(spec, Deliveries())
        assert caught.value.subject == f"{PREFIX}.private.x"
        assert not backend._subscriptions  # nothing left that looks alive
        # The next, allowed subscription is not blamed for the earlier refusal.
        allowed = SubscriptionSpec(subject=f"{PREFIX}.public.x", mode=DeliveryMode.AT_MOST_ONCE)
        sub = await backend.subscribe(allowed, Deliveries())
        assert sub.active
    finally:
        await backend.close()


def _violation_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "permission" in r.getMessage().lower()]


@pytest.mark.parametrize(
    ("operation", "subject"),
    [
        ("publish", "perm.agent.forbidden"),
        ("request", "perm.rpc.forbidden"),
        ("subscribe", "perm.rpc.secret"),
    ],
)
async def test_a_violation_is_logged_once_and_not_as_a_broken_connection(
    bus: Bus, caplog: pytest.LogCaptureFixture, operation: str, subject: str
) -> None:
    """The connection is fine: one warning naming the operation and subject, no traceback."""
    if operation == "publish":
        denied = bus.send(inform("forbidden"))
    elif operation == "request":
        denied = bus.request(
            ACLMessage(performative="request", sender_id="alice", receiver_id="forbidden")
        )
    else:
        agent = bus.agent("secret")
        agent.on()(_ignore)
        denied = agent.start()
    caplog.clear()
    with pytest.raises(PermissionDenied):
        await denied
    [ack] = await bus.send(inform("allowed"))  # a round trip: every log of the -ERR is in
    assert ack.stream == "PERM_AGENT"

    broken = [r for r in caplog.records if "connection broken" in r.getMessage().lower()]
    assert not broken, [r.getMessage() for r in broken]
    [record] = _violation_records(caplog)
    assert record.levelno == logging.WARNING
    assert record.exc_info is None, "a violation is not a crash: no traceback"
    text = record.getMessage()
    assert subject in text
    assert ("subscribe" if operation == "subscribe" else "publish") in text
    assert "connection stays up" in text


@pytest.mark.parametrize(
    ("credentials", "problem"),
    [
        ({"password": WRONG}, f"the server does not accept user {USER!r} with the password of"),
        ({"user": "nobody", "password": WRONG}, "the server does not accept user 'nobody' with"),
        (
            {"user": None, "password": None, "servers_auth": f"{USER}:{WRONG}"},
            "the server does not accept the credentials in the server URL (ACLBUS_NATS__SERVERS)",
        ),
    ],
    ids=["wrong-password", "unknown-user", "password-in-url"],
)
async def test_wrong_credentials_fail_at_connect_without_showing_the_secret(
    server: EmbeddedServer, credentials: dict[str, Any], problem: str
) -> None:
    """SCENARIOS 20: a clear error from start(), within connect_timeout, no secret anywhere."""
    overrides = dict(credentials)
    in_url = overrides.pop("servers_auth", None)
    servers = {}
    if in_url is not None:
        servers["servers"] = [server.url.replace("nats://", f"nats://{in_url}@")]
    settings = Settings(backend="nats", subject_prefix=PREFIX)
    nats = nats_settings(server, **servers)  # default reconnect policy: retry forever
    plugin = auth(**overrides)
    bus = Bus(
        settings, backend=NatsBackend(settings, nats=nats), entry_points=False, plugins=[plugin]
    )

    started = time.monotonic()
    with pytest.raises(BackendClosed) as caught:
        await bus.start()
    took = time.monotonic() - started

    assert took < nats.connect_timeout + 1.0, f"failed after {took:.3f} s"
    assert "Authorization Violation" in str(caught.value)
    assert isinstance(caught.value, AuthenticationError)
    assert caught.value.problem.startswith(problem), caught.value.problem
    assert not bus.started
    chain: list[BaseException] = []
    error: BaseException | None = caught.value
    while error is not None:
        chain.append(error)
        error = error.__cause__ or error.__context__
    for error in chain:
        assert WRONG not in str(error)
        assert WRONG not in repr(error)
        assert PASSWORD not in str(error)
    assert WRONG not in repr(plugin.auth_settings())


def test_password_from_the_environment_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACLBUS_AUTH__USER", USER)
    monkeypatch.setenv("ACLBUS_AUTH__PASSWORD", PASSWORD)
    settings = AuthSettings()
    assert settings.password is not None
    assert settings.password.get_secret_value() == PASSWORD
    assert PASSWORD not in repr(settings)
    assert PASSWORD not in str(settings.model_dump())
    options = AuthPlugin().aclbus_connection_options(Settings())  # what the backend is handed
    assert options is not None
    assert repr(options.credentials) == (
        "UserPassword(user='agent', password=SecretStr('**********'), "
        "user_setting='ACLBUS_AUTH__USER', password_setting='ACLBUS_AUTH__PASSWORD')"
    )
    url = NatsSettings(servers=[f"nats://{USER}:{PASSWORD}@127.0.0.1:4999"]).masked_servers()
    assert url == ["nats://***@127.0.0.1:4999"]


async def _ignore(msg: ACLMessage) -> None:
    return None
