"""The deprecated ``ACLBUS_NATS__`` TLS and credential settings keep working, with a warning.

Each deprecated path connects to a real nats-server (creds files need an operator: their
mapping and their refusal's words are checked without one), warns once per backend naming
the new setting, and a refusal names the old setting, since that is what was used. Giving a
part both ways is a `ConfigurationError` when the bus is made.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.errors import AuthorizationError

import aclbus_auth
import aclbus_tls
from aclbus.bus import Bus
from aclbus.connection_options import CredsFile
from aclbus.errors import AuthenticationError, ConfigurationError, TLSError
from aclbus.settings import Settings, StreamLimits
from aclbus_nats.backend import NatsBackend
from aclbus_nats.deprecated import legacy_options
from aclbus_nats.security import auth_refusal
from aclbus_nats.server import EmbeddedServer
from aclbus_nats.settings import NatsSettings

from .conftest import Certs, round_trip
from .test_auth import NKeyUser, make_user
from .test_tls import BOUND, WAIT, tls_block

PASSWORD = "pw-" + uuid.uuid4().hex
TOKEN = "tok-" + uuid.uuid4().hex
VARIABLES = [
    f"ACLBUS_{section}__{name}"
    for section, names in (
        ("NATS", ["TLS_CA_FILE", "TLS_CERT_FILE", "TLS_KEY_FILE", "USER", "PASSWORD", "TOKEN"]),
        ("NATS", ["NKEY_SEED_FILE", "CREDS_FILE"]),
        ("TLS", ["CA_FILE", "CERT_FILE", "KEY_FILE", "HANDSHAKE_FIRST"]),
        ("AUTH", ["USER", "PASSWORD", "TOKEN", "NKEY_SEED_FILE", "CREDS_FILE"]),
    )
    for name in names
]


@pytest.fixture(scope="module")
def alice(tmp_path_factory: pytest.TempPathFactory) -> NKeyUser:
    return make_user(tmp_path_factory.mktemp("nkeys"), "alice")


@pytest.fixture(scope="module")
def servers(certs: Certs, alice: NKeyUser) -> Iterator[dict[str, EmbeddedServer]]:
    """A TLS server with a password user and an NKey user, and a token server."""
    users = (
        f'authorization {{\n  users = [\n    {{ user: "old", password: "{PASSWORD}" }}\n'
        f'    {{ nkey: "{alice.public_key}" }}\n  ]\n}}'
    )
    configs = {
        "tls": tls_block(certs.server) + "\n" + users,
        "token": f'authorization {{\n  token: "{TOKEN}"\n}}',
    }
    started: dict[str, EmbeddedServer] = {}
    try:
        for name, config in configs.items():
            started[name] = EmbeddedServer(server_name=f"aclbus-old-{name}", extra_config=config)
            started[name].start()
        yield started
    finally:
        for server in started.values():
            server.stop()


def use(monkeypatch: pytest.MonkeyPatch, server: EmbeddedServer, **variables: str) -> None:
    monkeypatch.setenv("ACLBUS_NATS__SERVERS", server.url)
    monkeypatch.setenv("ACLBUS_NATS__CONNECT_TIMEOUT", "2")
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


def make_bus() -> Bus:
    """A bus with both plugins, as installed, and the ``ACLBUS_NATS__*`` of the environment."""
    s = Settings(
        backend="nats",
        subject_prefix="old" + uuid.uuid4().hex[:10],
        streams=StreamLimits(max_bytes=1 << 20, storage="memory"),
    )
    backend = NatsBackend(s, nats=NatsSettings())
    return Bus(s, backend=backend, entry_points=False, plugins=[aclbus_tls, aclbus_auth])


def deprecations(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)]


async def test_old_tls_and_user_password_still_connect_and_say_what_replaces_them(
    servers: dict[str, EmbeddedServer],
    certs: Certs,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = servers["tls"]
    use(
        monkeypatch,
        server,
        ACLBUS_NATS__TLS_CA_FILE=str(certs.ca.cert),
        ACLBUS_NATS__USER="old",
        ACLBUS_NATS__PASSWORD=PASSWORD,
    )
    caplog.set_level(logging.WARNING, logger="aclbus.nats")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bus = make_bus()
    expected = (
        "deprecated settings: ACLBUS_NATS__TLS_CA_FILE (set ACLBUS_TLS__CA_FILE instead), "
        "ACLBUS_NATS__USER (set ACLBUS_AUTH__USER instead), ACLBUS_NATS__PASSWORD (set "
        "ACLBUS_AUTH__PASSWORD instead); TLS moved to the aclbus-tls plugin, credentials to "
        "aclbus-auth, and the old settings still work for now"
    )
    assert deprecations(caught) == [expected]
    assert [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()] == [expected]
    conns = await asyncio.wait_for(round_trip(bus, server, "the old way"), WAIT * 2)
    assert {c.get("authorized_user") for c in conns} == {"old"}
    assert all(c.get("tls_version", "").startswith("1.") for c in conns), conns
    assert PASSWORD not in caplog.text


async def test_old_nkey_seed_file_works_beside_the_new_tls(
    servers: dict[str, EmbeddedServer],
    certs: Certs,
    alice: NKeyUser,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = servers["tls"]
    use(
        monkeypatch,
        server,
        ACLBUS_TLS__CA_FILE=str(certs.ca.cert),
        ACLBUS_NATS__NKEY_SEED_FILE=str(alice.seed_file),
    )
    with pytest.warns(DeprecationWarning, match="ACLBUS_AUTH__NKEY_SEED_FILE"):
        bus = make_bus()
    conns = await asyncio.wait_for(round_trip(bus, server, "nkey"), WAIT * 2)
    assert {c.get("authorized_user") for c in conns} == {alice.public_key}


async def test_old_token_works_and_a_refused_one_names_the_old_setting(
    servers: dict[str, EmbeddedServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = servers["token"]
    use(monkeypatch, server, ACLBUS_NATS__TOKEN=TOKEN)
    with pytest.warns(DeprecationWarning, match="ACLBUS_AUTH__TOKEN"):
        bus = make_bus()
    await asyncio.wait_for(round_trip(bus, server, "token"), WAIT * 2)

    use(monkeypatch, server, ACLBUS_NATS__TOKEN="wrong-" + TOKEN)
    with pytest.warns(DeprecationWarning, match="deprecated settings"):
        bus = make_bus()
    with pytest.raises(AuthenticationError) as caught:
        await asyncio.wait_for(bus.start(), BOUND * 2)
    assert caught.value.problem == (
        "the server does not accept the token of ACLBUS_NATS__TOKEN "
        "(the server said: Authorization Violation)"
    )
    assert TOKEN not in str(caught.value)


async def test_a_refused_certificate_names_the_old_tls_setting(
    servers: dict[str, EmbeddedServer], certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = servers["tls"]
    use(monkeypatch, server, ACLBUS_NATS__TLS_CA_FILE=str(certs.other_ca.cert))
    with pytest.warns(DeprecationWarning, match="deprecated settings"):
        bus = make_bus()
    with pytest.raises(TLSError) as caught:
        await asyncio.wait_for(bus.start(), BOUND * 2)
    assert caught.value.problem == (
        "the server's certificate is not signed by the CA in ACLBUS_NATS__TLS_CA_FILE "
        f"({certs.other_ca.cert})"
    )


def test_old_creds_file_is_used_and_named(tmp_path: Path) -> None:
    creds = tmp_path / "agent.creds"
    with pytest.warns(DeprecationWarning, match="ACLBUS_AUTH__CREDS_FILE"):
        options = legacy_options(NatsSettings(creds_file=creds))
    assert options.credentials == CredsFile(creds, "ACLBUS_NATS__CREDS_FILE")
    refused = auth_refusal(AuthorizationError(), options.credentials, [])
    assert refused == (
        f"the server does not accept the credentials of ACLBUS_NATS__CREDS_FILE ({creds}) "
        "(the server said: Authorization Violation)"
    )


@pytest.mark.parametrize(
    ("variables", "problem"),
    [
        (
            {"ACLBUS_NATS__TLS_CA_FILE": "ca", "ACLBUS_TLS__CA_FILE": "ca"},
            "TLS is set twice: by ACLBUS_NATS__TLS_CA_FILE (deprecated) and by the 'aclbus_tls' "
            "plugin (ACLBUS_TLS__CA_FILE); remove the ACLBUS_NATS__TLS_* settings",
        ),
        (
            {"ACLBUS_NATS__TOKEN": TOKEN, "ACLBUS_AUTH__USER": "new"},
            "credentials are set twice: by ACLBUS_NATS__TOKEN (deprecated) and by the "
            "'aclbus_auth' plugin (ACLBUS_AUTH__USER); remove the deprecated ones",
        ),
        (
            {"ACLBUS_NATS__TOKEN": TOKEN, "ACLBUS_NATS__USER": "old"},
            "ACLBUS_NATS__USER, ACLBUS_NATS__TOKEN are all set: choose one way to authenticate",
        ),
    ],
    ids=["tls-twice", "credentials-twice", "two-old-ways"],
)
def test_a_part_set_both_ways_is_a_configuration_error_when_the_bus_is_made(
    servers: dict[str, EmbeddedServer],
    certs: Certs,
    monkeypatch: pytest.MonkeyPatch,
    variables: dict[str, str],
    problem: str,
) -> None:
    ca = str(certs.ca.cert)
    use(monkeypatch, servers["token"], **{k: ca if v == "ca" else v for k, v in variables.items()})
    with (
        pytest.warns(DeprecationWarning, match="deprecated settings"),
        pytest.raises(ConfigurationError) as caught,
    ):
        make_bus()
    assert str(caught.value) == problem
    assert TOKEN not in str(caught.value)
