"""Token and NKey authentication against real nats-servers with ``authorization {}`` blocks.

The client's credentials come from ``ACLBUS_AUTH__TOKEN`` and ``ACLBUS_AUTH__NKEY_SEED_FILE``,
read by the aclbus-auth plugin.
Credentials the server refuses (or none where it wants some) are an `AuthenticationError` at the
first refusal, well within the connect timeout, naming the setting and holding no secret.
User and password are tested in test_permissions.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nkeys
import pytest

import aclbus_auth
from aclbus.bus import Bus
from aclbus.errors import AuthenticationError, BackendClosed
from aclbus.settings import Settings, StreamLimits
from aclbus_auth import AuthSettings
from aclbus_nats.backend import NatsBackend
from aclbus_nats.server import EmbeddedServer
from aclbus_nats.settings import NatsSettings

from .conftest import round_trip

WAIT = 5.0
CONNECT_TIMEOUT = 2.0
# connect() gives up after connect_timeout * (servers + 1) at the latest; one server here.
BOUND = CONNECT_TIMEOUT * 2 + 1.0
FAST = 1.0  # what "at once" means: a refusal is not retried until the bound

TOKEN = "tok-" + uuid.uuid4().hex  # distinctive, so that a leak is found by a plain search
WRONG_TOKEN = "wrong-" + uuid.uuid4().hex
SAID = " (the server said: Authorization Violation)"


@dataclass(frozen=True)
class NKeyUser:
    """A user NKey pair: its seed file (the secret) and its public key (for the server)."""

    seed: str
    seed_file: Path
    public_key: str


def make_user(directory: Path, name: str) -> NKeyUser:
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public_key = nkeys.from_seed(seed).public_key.decode()
    assert public_key.startswith("U")
    seed_file = directory / f"{name}.nk"
    seed_file.touch(mode=0o600)
    seed_file.write_bytes(seed + b"\n")
    return NKeyUser(seed.decode(), seed_file, public_key)


@pytest.fixture(scope="module")
def users(tmp_path_factory: pytest.TempPathFactory) -> dict[str, NKeyUser]:
    """``alice``, whom the NKey server knows, and ``mallory``, whom it does not."""
    directory = tmp_path_factory.mktemp("nkeys")
    return {name: make_user(directory, name) for name in ("alice", "mallory")}


@pytest.fixture(scope="module")
def servers(users: dict[str, NKeyUser]) -> Iterator[dict[str, EmbeddedServer]]:
    """A token server and an NKey server, for the module."""
    configs = {
        "token": f'authorization {{\n  token: "{TOKEN}"\n}}',
        "nkey": (
            f'authorization {{\n  users = [\n    {{ nkey: "{users["alice"].public_key}" }}\n  ]\n}}'
        ),
    }
    started: dict[str, EmbeddedServer] = {}
    try:
        for name, config in configs.items():
            started[name] = EmbeddedServer(server_name=f"aclbus-{name}", extra_config=config)
            started[name].start()
        yield started
    finally:
        for server in started.values():
            server.stop()


def use(monkeypatch: pytest.MonkeyPatch, server: EmbeddedServer, **auth: str | None) -> None:
    """Point the bus at ``server``, with ``ACLBUS_AUTH__TOKEN`` or ``NKEY_SEED_FILE`` if given."""
    monkeypatch.setenv("ACLBUS_NATS__SERVERS", server.url)
    monkeypatch.setenv("ACLBUS_NATS__CONNECT_TIMEOUT", str(CONNECT_TIMEOUT))
    for name in ("TOKEN", "NKEY_SEED_FILE", "USER", "PASSWORD", "CREDS_FILE"):
        monkeypatch.delenv(f"ACLBUS_AUTH__{name}", raising=False)
        monkeypatch.delenv(f"ACLBUS_NATS__{name}", raising=False)
    for name, value in auth.items():
        if value is not None:
            monkeypatch.setenv(f"ACLBUS_AUTH__{name.upper()}", value)


def make_bus() -> tuple[Bus, AuthSettings, NatsBackend]:
    """A bus on ``ACLBUS_NATS__SERVERS`` with the auth plugin, as installed."""
    s = Settings(
        backend="nats",
        subject_prefix="auth" + uuid.uuid4().hex[:10],
        streams=StreamLimits(max_bytes=1 << 20, storage="memory"),
    )
    backend = NatsBackend(s, nats=NatsSettings())
    bus = Bus(s, backend=backend, entry_points=False, plugins=[aclbus_auth])
    return bus, AuthSettings(), backend


async def authorised_users(bus: Bus, server: EmbeddedServer) -> set[str]:
    """alice sends bob one message; the users the server authorised the connections as."""
    connections = await round_trip(bus, server, "signed in")
    return {str(c.get("authorized_user")) for c in connections}


def secrets(users: dict[str, NKeyUser]) -> list[str]:
    """Every secret of this module: none may show in an error, a repr or a log line."""
    return [TOKEN, WRONG_TOKEN, *(u.seed for u in users.values())]


# -- accepted credentials ------------------------------------------------------------------------


async def test_the_right_token_connects_and_carries_a_message(
    servers: dict[str, EmbeddedServer],
    users: dict[str, NKeyUser],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    use(monkeypatch, servers["token"], token=TOKEN)
    caplog.set_level(logging.DEBUG)
    bus, auth, backend = make_bus()
    assert auth.token is not None
    assert auth.token.get_secret_value() == TOKEN
    authorized = await asyncio.wait_for(authorised_users(bus, servers["token"]), WAIT * 2)
    assert authorized == {"[REDACTED]"}  # how nats-server shows a token connection
    shown = f"{auth!r} {backend!r} {caplog.text}"
    assert not [s for s in secrets(users) if s in shown]


async def test_the_known_nkey_connects_and_carries_a_message(
    servers: dict[str, EmbeddedServer],
    users: dict[str, NKeyUser],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    use(monkeypatch, servers["nkey"], nkey_seed_file=str(users["alice"].seed_file))
    caplog.set_level(logging.DEBUG)
    bus, auth, backend = make_bus()
    authorized = await asyncio.wait_for(authorised_users(bus, servers["nkey"]), WAIT * 2)
    assert authorized == {users["alice"].public_key}
    shown = f"{auth!r} {backend!r} {caplog.text}"
    assert not [s for s in secrets(users) if s in shown]


async def test_doctor_shows_the_login_by_its_setting_and_never_its_secret(
    servers: dict[str, EmbeddedServer], users: dict[str, NKeyUser], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``aclbus doctor`` (`Bus.describe`) says how the bus logged in: the kind, the setting and
    the file; a token or seed is never in it."""
    seed_file = str(users["alice"].seed_file)
    cases = [
        ("token", {"token": TOKEN}, {"mode": "token", "settings": ["ACLBUS_AUTH__TOKEN"]}),
        (
            "nkey",
            {"nkey_seed_file": seed_file},
            {"mode": "nkey", "settings": ["ACLBUS_AUTH__NKEY_SEED_FILE"], "file": seed_file},
        ),
    ]
    for server, auth, login in cases:
        use(monkeypatch, servers[server], **auth)
        bus, _, _ = make_bus()
        async with bus:
            facts = await bus.describe()
        security = facts["server"]["security"]
        assert security["authentication"] == login
        assert security["tls"] is None
        assert security["policy_user"] is None
        text = json.dumps(facts, default=str)
        assert not [s for s in secrets(users) if s in text]


# -- refused credentials -------------------------------------------------------------------------


def problem_of(case: str, users: dict[str, NKeyUser]) -> str:
    if case == "wrong token":
        return "the server does not accept the token of ACLBUS_AUTH__TOKEN" + SAID
    if case in ("no token", "no nkey"):
        return (
            "the server requires authentication and none is set: set ACLBUS_AUTH__TOKEN, "
            "ACLBUS_AUTH__USER and ACLBUS_AUTH__PASSWORD, ACLBUS_AUTH__NKEY_SEED_FILE or "
            "ACLBUS_AUTH__CREDS_FILE (the aclbus-auth plugin)" + SAID
        )
    assert case == "another user's nkey"
    return (
        "the server knows no user with the NKey of the seed in ACLBUS_AUTH__NKEY_SEED_FILE "
        f"({users['mallory'].seed_file})" + SAID
    )


FAILURES: dict[str, tuple[str, str, str | None]] = {
    # case: (server, the setting, its value: a token, or whose seed file)
    "wrong token": ("token", "token", WRONG_TOKEN),
    "no token": ("token", "token", None),
    "another user's nkey": ("nkey", "nkey_seed_file", "mallory"),
    "no nkey": ("nkey", "nkey_seed_file", None),
}


@pytest.mark.parametrize("case", list(FAILURES))
async def test_refused_credentials_are_an_authentication_error_at_connect(
    case: str,
    servers: dict[str, EmbeddedServer],
    users: dict[str, NKeyUser],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server_name, setting, value = FAILURES[case]
    server = servers[server_name]
    if setting == "nkey_seed_file" and value is not None:
        value = str(users[value].seed_file)
    use(monkeypatch, server, **{setting: value})
    caplog.set_level(logging.DEBUG)
    bus, auth, backend = make_bus()  # default reconnect policy: retry forever

    started = time.monotonic()
    with pytest.raises(AuthenticationError) as caught:
        await asyncio.wait_for(bus.start(), BOUND * 2)
    took = time.monotonic() - started

    assert took < FAST, f"gave up after {took:.2f} s (the bound is {BOUND:g} s)"
    assert isinstance(caught.value, BackendClosed)  # what a failed connect raised before
    problem = problem_of(case, users)
    assert (
        str(caught.value)
        == f"cannot connect to NATS at {server.url}: authentication failed: {problem}"
    )
    assert caught.value.problem == problem
    assert not bus.started
    assert server.running
    # No secret in the error, its cause, the settings, the backend, nor any line logged.
    chain: list[BaseException] = []
    error: BaseException | None = caught.value
    while error is not None:
        chain.append(error)
        error = error.__cause__ or error.__context__
    shown = " ".join(f"{e!s} {e!r}" for e in chain) + f" {auth!r} {backend!r} {caplog.text}"
    assert not [s for s in secrets(users) if s in shown]
    # The client gave up: no reconnect attempt follows the refusal.
    logged = len(caplog.records)
    await asyncio.sleep(0.3)
    assert len(caplog.records) == logged, caplog.records[logged:]
