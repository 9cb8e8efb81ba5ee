"""The TLS modes beyond plain server TLS, against real nats-servers: ``verify_and_map``,
``handshake_first``, and rotating the server's certificate under connected agents.

Certificates come from the ``certs`` fixture (conftest.py); the client's TLS from
``ACLBUS_TLS__*`` (the aclbus-tls plugin), set by ``test_tls.use``.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aclbus.acl import ACLMessage
from aclbus.bus import Bus
from aclbus.errors import AuthenticationError, PermissionDenied, TLSError
from aclbus.testing.collector import Collector
from aclbus_nats.backend import NatsBackend
from aclbus_nats.server import EmbeddedServer

from .conftest import Certs, Pair, round_trip
from .test_tls import BOUND, WAIT, make_bus, tls_block, use

# -- verify_and_map: the certificate is the user ------------------------------------------------

# nats-server maps a client certificate to the first user it knows among the certificate's SAN
# emails, its SAN DNS names, then its subject: bob's has the email, alice's only a subject.
ALICE = "CN=agent-alice"
BOB = "bob@agents.test"


def mapped_config(certs: Certs) -> str:
    deny = {ALICE: "carol", BOB: "dave"}  # each may send anywhere but to this agent
    users = "\n".join(
        f'    {{ user: "{user}", permissions: {{ publish: {{ deny: ["*.agent.{who}"] }} }} }}'
        for user, who in deny.items()
    )
    return (
        tls_block(certs.server, certs.ca, "verify_and_map: true")
        + f"\nauthorization {{\n  users = [\n{users}\n  ]\n}}"
    )


@pytest.fixture(scope="module")
def mapped(certs: Certs) -> Iterator[EmbeddedServer]:
    with EmbeddedServer(server_name="aclbus-mapped", extra_config=mapped_config(certs)) as srv:
        yield srv


def inform(receiver: str) -> ACLMessage:
    return ACLMessage(performative="inform", sender_id="alice", receiver_id=receiver)


@pytest.mark.parametrize(
    ("client", "user", "allowed", "denied"),
    [("client", ALICE, "dave", "carol"), ("email_client", BOB, "carol", "dave")],
    ids=["subject", "san-email"],
)
async def test_verify_and_map_makes_the_certificate_the_user_and_its_permissions_apply(
    mapped: EmbeddedServer,
    certs: Certs,
    monkeypatch: pytest.MonkeyPatch,
    client: str,
    user: str,
    allowed: str,
    denied: str,
) -> None:
    use(monkeypatch, mapped, ca=certs.ca, client=getattr(certs, client))
    conns = await asyncio.wait_for(round_trip(make_bus(), mapped, "mapped"), WAIT * 2)
    assert {c.get("authorized_user") for c in conns} == {user}, conns

    bus = make_bus()
    async with bus:
        [ack] = await bus.send(inform(allowed))
        assert ack.sequence is not None
        started = time.monotonic()
        with pytest.raises(PermissionDenied) as caught:
            await bus.send(inform(denied))
        assert time.monotonic() - started < 1.0
        assert caught.value.subject == f"{bus.subjects.inbox(denied)}".lower()


async def test_a_certificate_the_server_maps_to_no_user_is_refused(
    mapped: EmbeddedServer, certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Signed by the server's CA, but neither its subject nor a SAN is a user of the server.
    stranger = certs.stranger_client
    use(monkeypatch, mapped, ca=certs.ca, client=stranger)
    bus = make_bus()
    with pytest.raises(AuthenticationError) as caught:
        await asyncio.wait_for(bus.start(), BOUND * 2)
    assert caught.value.problem.startswith(
        "the server maps no user it knows to the client certificate of ACLBUS_TLS__CERT_FILE "
        f"({stranger.cert}) (verify_and_map"
    ), caught.value.problem


# -- handshake_first ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def first(certs: Certs) -> Iterator[EmbeddedServer]:
    config = tls_block(certs.server, None, "handshake_first: true")
    with EmbeddedServer(server_name="aclbus-first", extra_config=config) as srv:
        yield srv


async def test_handshake_first_connects_to_a_server_that_wants_it(
    first: EmbeddedServer, certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, first, ca=certs.ca, handshake_first=True)
    conns = await asyncio.wait_for(round_trip(make_bus(), first, "handshake first"), WAIT * 2)
    assert all(c.get("tls_version", "").startswith("1.") for c in conns), conns
    assert all(c.get("tls_first") for c in conns), conns  # the server saw the TLS-first mode


async def test_handshake_first_to_a_plaintext_server_is_a_tls_error_at_once(
    certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    with EmbeddedServer(server_name="aclbus-plain") as plain:
        use(monkeypatch, plain, ca=certs.ca, handshake_first=True)
        bus = make_bus()
        started = time.monotonic()
        with pytest.raises(TLSError) as caught:
            await asyncio.wait_for(bus.start(), BOUND * 2)
        assert time.monotonic() - started < 1.0
    assert caught.value.problem == (
        "the server answered the TLS handshake in plain text (ACLBUS_TLS__HANDSHAKE_FIRST is "
        "on): it does not speak TLS first; give its tls {} block handshake_first: true, or "
        "turn ACLBUS_TLS__HANDSHAKE_FIRST off"
    )


async def test_a_tls_url_to_a_plaintext_server_is_refused_before_anything_is_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with EmbeddedServer(server_name="aclbus-plain-url") as plain:
        use(monkeypatch, plain)
        url = plain.url.replace("nats://", "tls://")
        monkeypatch.setenv("ACLBUS_NATS__SERVERS", url)
        bus = make_bus()
        with pytest.raises(TLSError) as caught:
            await asyncio.wait_for(bus.start(), BOUND * 2)
    assert caught.value.problem.startswith(
        f"the server at 127.0.0.1:{plain.port} does not speak TLS (its INFO has no "
        "tls_required), and the server URL is tls://: nothing was sent to it."
    ), caught.value.problem


# -- rotating the server's certificate -----------------------------------------------------------


def peer_subject(bus: Bus) -> str:
    """The subject of the certificate the server showed this bus' connection."""
    backend = bus.backend
    assert isinstance(backend, NatsBackend)
    nc = backend._nc
    assert nc is not None
    ssl_object = nc._transport._io_writer.get_extra_info("ssl_object")  # type: ignore[union-attr]
    subject = dict(pair[0] for pair in ssl_object.getpeercert()["subject"])
    return str(subject["commonName"])


def replace(live: Pair, new: Pair) -> None:
    """Put ``new``'s files where the server reads ``live``'s, each in one rename."""
    for source, target in ((new.cert, live.cert), (new.key, live.key)):
        staged = target.with_suffix(".new")
        shutil.copyfile(source, staged)
        staged.replace(target)


def wait_reloaded(server: EmbeddedServer, before: int) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if server.log_path.read_text().count("Reloaded server configuration") > before:
            return
        time.sleep(0.05)
    raise AssertionError("the server did not log a reload within 5 s")


@pytest.mark.parametrize("rotation", ["same CA", "new CA"])
async def test_rotated_server_certificate_keeps_agents_connected_and_new_ones_get_it(
    certs: Certs,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    rotation: str,
) -> None:
    live = Pair(tmp_path / "server.pem", tmp_path / "server-key.pem")
    replace(live, certs.server)
    new = certs.rotated_server if rotation == "same CA" else certs.new_ca_server
    expected = "aclbus rotated server" if rotation == "same CA" else "aclbus new-CA server"
    caplog.set_level(logging.WARNING, logger="aclbus.nats")
    got: Collector[ACLMessage] = Collector()

    async def take(msg: ACLMessage) -> None:
        got.add(msg)

    with EmbeddedServer(server_name="aclbus-rotate", extra_config=tls_block(live)) as server:
        # The agents trust both CAs during a rotation to a new CA: the bundle holds both.
        use(monkeypatch, server, ca=certs.bundle)
        agents = make_bus()
        agents.agent("bob").on()(take)
        async with agents:
            assert peer_subject(agents) == "aclbus test server"
            await agents.send(inform("bob"))
            await got.wait_for(1, timeout=WAIT)

            reloads = server.log_path.read_text().count("Reloaded server configuration")
            replace(live, new)
            server.kill(signal.SIGHUP)  # nats-server --signal reload: it reads the files again
            await asyncio.to_thread(wait_reloaded, server, reloads)

            # Connected agents stay connected on their session and keep delivering.
            for _ in range(3):
                await agents.send(inform("bob"))
            await got.wait_for(4, timeout=WAIT)
            assert peer_subject(agents) == "aclbus test server"  # the same TLS session

            # A new connection gets the new certificate.
            newcomer = agents.sibling()  # same prefix, a connection of its own
            async with newcomer:
                assert peer_subject(newcomer) == expected
                await newcomer.send(inform("bob"))
                await got.wait_for(5, timeout=WAIT)

            if rotation == "new CA":
                # A client that trusts only the old CA is refused the new certificate.
                use(monkeypatch, server, ca=certs.ca)
                with pytest.raises(TLSError) as caught:
                    await asyncio.wait_for(make_bus().start(), BOUND * 2)
                assert "not signed by the CA in ACLBUS_TLS__CA_FILE" in caught.value.problem
    said = [r.getMessage() for r in caplog.records if r.name == "aclbus.nats"]
    assert not [m for m in said if "disconnected" in m or "reconnected" in m], said
