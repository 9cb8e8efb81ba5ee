"""Decentralized JWT auth (operator mode) against a real nats-server with a memory resolver.

The operator, its accounts and users are made in the test with `aclbus_auth.jwt` (see
operator_mode.py); a bus connects with ``ACLBUS_AUTH__CREDS_FILE``. What the user JWT allows,
the server enforces (`PermissionDenied` at once); a JWT the server refuses -- expired, signed by
an account it does not know, or in a file whose seed is not the JWT's -- is an
`AuthenticationError` at the first refusal, without a retry.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from aclbus.acl import ACLMessage, Performative
from aclbus.bus import Bus
from aclbus.errors import (
    AuthenticationError,
    BackendClosed,
    ConfigurationError,
    PermissionDenied,
)
from aclbus.settings import Settings, StreamLimits
from aclbus_auth import AuthPlugin, AuthSettings
from aclbus_auth.jwt import verify_jwt
from aclbus_nats.backend import NatsBackend
from aclbus_nats.server import EmbeddedServer
from aclbus_nats.settings import NatsSettings

from .conftest import round_trip
from .operator_mode import OperatorMode, operator_server

WAIT = 5.0
CONNECT_TIMEOUT = 2.0
FAST = 1.0  # what "at once" means: a refusal is not retried until the connect timeout
SAID = " (the server said: Authorization Violation)"


@pytest.fixture(scope="module")
def mode(tmp_path_factory: pytest.TempPathFactory) -> OperatorMode:
    return OperatorMode(tmp_path_factory.mktemp("operator"))


@pytest.fixture(scope="module")
def server(mode: OperatorMode) -> Iterator[EmbeddedServer]:
    with operator_server(mode) as running:
        yield running


def make_bus(server: EmbeddedServer, creds: Path, prefix: str | None = None) -> Bus:
    settings = Settings(
        backend="nats",
        subject_prefix=prefix or "op" + uuid.uuid4().hex[:10],
        request_timeout=WAIT,
        streams=StreamLimits(max_bytes=1 << 20, storage="memory"),
    )
    nats = NatsSettings(servers=[server.url], connect_timeout=CONNECT_TIMEOUT, publish_timeout=WAIT)
    return Bus(
        settings,
        backend=NatsBackend(settings, nats=nats),
        plugins=[AuthPlugin(AuthSettings(creds_file=creds))],
        entry_points=False,
    )


def refusals(server: EmbeddedServer) -> int:
    """How many connections the server has refused so far (its log's authentication errors)."""
    return server.log_path.read_text().count("authentication error")


# -- accepted credentials ------------------------------------------------------------------------


async def test_a_creds_file_connects_and_carries_a_message_and_a_reply(
    mode: OperatorMode, server: EmbeddedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    creds, user, token = mode.creds("alice")
    assert creds.stat().st_mode & 0o777 == 0o600
    assert verify_jwt(token, issuer=mode.account.public_key)["sub"] == user.public_key
    bus = make_bus(server, creds)

    async def double(msg: ACLMessage) -> ACLMessage:
        return msg.reply(Performative.INFORM, payload={"doubled": msg.payload["x"] * 2})

    bus.agent("worker").on(Performative.REQUEST)(double)
    connections = await asyncio.wait_for(round_trip(bus, server, "by creds"), WAIT * 2)
    async with bus:
        reply = await asyncio.wait_for(
            bus.request(
                ACLMessage(
                    performative="request", sender_id="bob", receiver_id="worker", payload={"x": 4}
                )
            ),
            WAIT,
        )
    assert reply.payload == {"doubled": 8}
    # The server authorised every connection as the user of the JWT, in the APP account.
    assert {str(c.get("authorized_user")) for c in connections} == {user.public_key}
    assert {str(c.get("account")) for c in connections} == {mode.account.public_key}
    shown = caplog.text
    assert not [s for s in mode.secrets() if s in shown]


async def test_the_user_jwt_permissions_are_enforced_at_once(
    mode: OperatorMode, server: EmbeddedServer
) -> None:
    prefix = "op" + uuid.uuid4().hex[:10]
    creds, _, _ = mode.creds(
        "limited",
        permissions={
            "pub": {"deny": [f"{prefix}.agent.forbidden"]},
            "sub": {"deny": [f"{prefix}.rpc.secret"]},
        },
    )
    bus = make_bus(server, creds, prefix)
    async with bus:
        started = time.monotonic()
        with pytest.raises(PermissionDenied) as caught:
            await bus.send(
                ACLMessage(performative="inform", sender_id="a", receiver_id="forbidden")
            )
        assert time.monotonic() - started < FAST
        assert (caught.value.operation, caught.value.subject) == (
            "publish",
            f"{prefix}.agent.forbidden",
        )
        secret = bus.agent("secret")
        secret.on()(_ignore)
        with pytest.raises(PermissionDenied) as refused:
            await secret.start()
        assert (refused.value.operation, refused.value.subject) == (
            "subscribe",
            f"{prefix}.rpc.secret",
        )
        # What the JWT does not deny still works on the same connection.
        [ack] = await bus.send(
            ACLMessage(performative="inform", sender_id="a", receiver_id="allowed")
        )
        assert ack.stream == f"{prefix.upper()}_AGENT"


async def test_an_account_without_jetstream_limits_is_a_configuration_error(
    mode: OperatorMode, server: EmbeddedServer
) -> None:
    """The account's JWT gives it no JetStream storage: the bus says so instead of hanging."""
    creds, _, _ = mode.creds("plain", signer=mode.plain)
    bus = make_bus(server, creds)
    with pytest.raises(ConfigurationError, match="JetStream is not available"):
        await asyncio.wait_for(bus.start(), WAIT)
    assert not bus.started


async def test_a_jwt_that_expires_while_connected_closes_the_connection_for_good(
    mode: OperatorMode, server: EmbeddedServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The server drops the user at ``exp``; nats-py does not retry with the expired JWT."""
    caplog.set_level(logging.WARNING, logger="aclbus.nats")
    expires = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=3)
    creds, _, _ = mode.creds("short-lived", expires=expires)
    bus = make_bus(server, creds)
    before = refusals(server)
    async with bus:
        await bus.send(ACLMessage(performative="inform", sender_id="a", receiver_id="b"))
        deadline = time.monotonic() + 6.0
        while "nats: disconnected" not in caplog.text:
            assert time.monotonic() < deadline, "still connected after the JWT expired"
            await asyncio.sleep(0.1)
        assert dt.datetime.now(dt.UTC) >= expires - dt.timedelta(seconds=1)
        with pytest.raises(BackendClosed, match="closed"):
            await asyncio.wait_for(
                bus.send(ACLMessage(performative="inform", sender_id="a", receiver_id="b")), WAIT
            )
        await asyncio.sleep(0.5)
        assert refusals(server) == before  # no reconnect attempt with the expired JWT


async def _ignore(msg: ACLMessage) -> None:
    del msg


# -- refused credentials -------------------------------------------------------------------------

_HOUR = dt.timedelta(hours=1)


def refused_creds(mode: OperatorMode, case: str) -> tuple[Path, str]:
    """The creds file of ``case`` and what the refusal must say after the creds path."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    if case == "expired":
        creds, _, _ = mode.creds("expired", issued_at=now - 2 * _HOUR, expires=now - _HOUR)
        return creds, f": its user JWT expired at {(now - _HOUR):%Y-%m-%d %H:%M:%S} UTC"
    if case == "unknown account":
        creds, _, _ = mode.creds("stranger", signer=mode.stranger)
        return creds, ""
    assert case == "seed not the JWT's"
    creds, _, _ = mode.creds("mismatch", wrong_seed=True)
    return creds, ""


@pytest.mark.parametrize("case", ["expired", "unknown account", "seed not the JWT's"])
async def test_refused_creds_are_an_authentication_error_at_the_first_refusal(
    case: str, mode: OperatorMode, server: EmbeddedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    creds, detail = refused_creds(mode, case)
    bus = make_bus(server, creds)  # default reconnect policy: retry forever
    before = refusals(server)

    started = time.monotonic()
    with pytest.raises(AuthenticationError) as caught:
        await asyncio.wait_for(bus.start(), CONNECT_TIMEOUT * 4)
    took = time.monotonic() - started

    assert took < FAST, f"gave up after {took:.2f} s"
    problem = (
        f"the server does not accept the credentials of ACLBUS_AUTH__CREDS_FILE ({creds})"
        + detail
        + SAID
    )
    assert caught.value.problem == problem
    assert str(caught.value) == (
        f"cannot connect to NATS at {server.url}: authentication failed: {problem}"
    )
    assert not bus.started
    # Bounded: one attempt, refused once; no reconnect follows.
    logged = len(caplog.records)
    await asyncio.sleep(0.5)
    assert refusals(server) - before == 1
    assert len(caplog.records) == logged, caplog.records[logged:]
    assert server.running
    chain: list[BaseException] = []
    error: BaseException | None = caught.value
    while error is not None:
        chain.append(error)
        error = error.__cause__ or error.__context__
    shown = " ".join(f"{e!s} {e!r}" for e in chain) + caplog.text
    assert not [s for s in mode.secrets() if s in shown]
