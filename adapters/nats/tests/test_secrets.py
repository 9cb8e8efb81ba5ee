"""No secret of any auth mode shows in anything a run captures.

For each way to authenticate -- user and password, token, NKey seed, a ``.creds`` file (user JWT
and seed, operator mode) and a TLS client key (mutual TLS) -- a real nats-server is started,
and both paths are run from the environment, as a user runs them:

* accepted: a bus connects, carries a message, dead-letters another; ``aclbus doctor``,
  ``aclbus dlq ls --json`` and ``aclbus dlq show`` run against it;
* refused: a bus fails to connect, and so does ``aclbus doctor``.

Everything is captured: every log record at DEBUG of every logger (nats-py's and FastStream's
too), each error with its causes (``str`` and ``repr``), the ``repr`` and ``str`` of the
settings, the bus and the backend, the bus' description, and the commands' output. The scan
looks for each secret: passwords, tokens, seeds (whole, their base32 body and a piece of it),
the lines of each private key's PEM body, and the signature of each user JWT. A failure names
the secret and where it showed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from aclbus import ACLMessage, Bus, Performative
from aclbus.cli import main
from aclbus.dlq import Reason
from aclbus.errors import AuthenticationError, TLSError
from aclbus.settings import Settings
from aclbus_auth.jwt import NKey
from aclbus_auth.settings import AuthSettings
from aclbus_nats.server import EmbeddedServer
from aclbus_nats.settings import NatsSettings

from .conftest import Certs, Pair
from .operator_mode import OperatorMode, operator_server

WAIT = 10.0
PASSWORD = "pw-" + uuid.uuid4().hex
WRONG_PASSWORD = "wrongpw-" + uuid.uuid4().hex
TOKEN = "tok-" + uuid.uuid4().hex
WRONG_TOKEN = "wrongtok-" + uuid.uuid4().hex


@dataclass
class Mode:
    """A server for one auth mode, the environment that it accepts and one it refuses."""

    server: EmbeddedServer
    accepted: dict[str, str]
    refused: dict[str, str]
    secrets: dict[str, str] = field(default_factory=dict)  # label: secret


def seed_secrets(label: str, seed: str) -> dict[str, str]:
    """A seed, its base32 body (without the ``S?`` prefix) and a piece of that body."""
    return {label: seed, f"{label} (body)": seed[2:], f"{label} (piece)": seed[10:34]}


def key_secrets(label: str, pair: Pair) -> dict[str, str]:
    """Each line of a private key's PEM body."""
    body = [
        line for line in pair.key.read_text().splitlines() if line and not line.startswith("-----")
    ]
    return {f"{label} (PEM line {i})": line for i, line in enumerate(body) if len(line) >= 16}


def tls_block(certs: Certs) -> str:
    return (
        "tls {\n"
        f'  cert_file: "{certs.server.cert}"\n  key_file: "{certs.server.key}"\n'
        f'  ca_file: "{certs.ca.cert}"\n  verify: true\n  timeout: 2\n'
        "}"
    )


@pytest.fixture(scope="module")
def modes(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[dict[str, Mode]]:
    """One running server per auth mode, for the module."""
    directory = tmp_path_factory.mktemp("secrets")
    alice, mallory = seed_file(directory, "alice"), seed_file(directory, "mallory")
    operator = OperatorMode(directory)
    good_creds, _, _ = operator.creds("agent")
    bad_creds, _, _ = operator.creds("mismatched", wrong_seed=True)
    configs = {
        "password": f'authorization {{\n  user: agent\n  password: "{PASSWORD}"\n}}',
        "token": f'authorization {{\n  token: "{TOKEN}"\n}}',
        "nkey": f'authorization {{\n  users = [ {{ nkey: "{alice[1].public_key}" }} ]\n}}',
        "mtls": tls_block(certs),
    }
    servers = {
        name: EmbeddedServer(server_name=f"sec-{name}", extra_config=c)
        for name, c in configs.items()
    }
    servers["creds"] = operator_server(operator, "sec-creds")
    tls = {"TLS_CA_FILE": str(certs.ca.cert)}
    built = {
        "password": Mode(
            servers["password"],
            {"USER": "agent", "PASSWORD": PASSWORD},
            {"USER": "agent", "PASSWORD": WRONG_PASSWORD},
            {"password": PASSWORD, "wrong password": WRONG_PASSWORD},
        ),
        "token": Mode(
            servers["token"],
            {"TOKEN": TOKEN},
            {"TOKEN": WRONG_TOKEN},
            {"token": TOKEN, "wrong token": WRONG_TOKEN},
        ),
        "nkey": Mode(
            servers["nkey"],
            {"NKEY_SEED_FILE": str(alice[0])},
            {"NKEY_SEED_FILE": str(mallory[0])},
            {"alice's seed": alice[1].seed, "mallory's seed": mallory[1].seed},
        ),
        "creds": Mode(
            servers["creds"],
            {"CREDS_FILE": str(good_creds)},
            {"CREDS_FILE": str(bad_creds)},
            {f"creds secret {i}": s for i, s in enumerate(operator.secrets())},
        ),
        "mtls": Mode(
            servers["mtls"],
            tls | {"TLS_CERT_FILE": str(certs.client.cert), "TLS_KEY_FILE": str(certs.client.key)},
            # A key the server's CA did not certify: refused, with the key loaded.
            tls
            | {
                "TLS_CERT_FILE": str(certs.untrusted_server.cert),
                "TLS_KEY_FILE": str(certs.untrusted_server.key),
            },
        ),
    }
    built["mtls"].secrets = key_secrets("client key", certs.client) | key_secrets(
        "refused client key", certs.untrusted_server
    )
    for mode in built.values():
        for label, seed in list(mode.secrets.items()):
            if seed.startswith(("SU", "SA", "SO")) and len(seed) == 58:
                mode.secrets |= seed_secrets(label, seed)
    started: list[EmbeddedServer] = []
    try:
        for server in servers.values():
            started.append(server.start())
        yield built
    finally:
        for server in started:
            server.stop()


def seed_file(directory: Path, name: str) -> tuple[Path, NKey]:
    """A user NKey and its seed file (mode 0600); the server knows it only if told."""
    key = NKey.create("user")
    path = directory / f"{name}.nk"
    path.touch(mode=0o600)
    path.write_text(key.seed + "\n")
    return path, key


@pytest.fixture
def every_log_record(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog at DEBUG for every logger, those that do not propagate to the root included."""
    caplog.set_level(logging.DEBUG)
    names = ["nats", "nats.aio.client", "faststream", "faststream.access", "aclbus", "asyncio"]
    loggers = [logging.getLogger(n) for n in {*names, *logging.root.manager.loggerDict}]
    attached = [lg for lg in loggers if not lg.propagate]
    levels = {lg.name: lg.level for lg in loggers}
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
    for lg in attached:
        lg.addHandler(caplog.handler)
    yield caplog
    for lg in attached:
        lg.removeHandler(caplog.handler)
    for lg in loggers:
        lg.setLevel(levels[lg.name])


def environment(mode: Mode, prefix: str, auth: dict[str, str]) -> dict[str, str]:
    env = {
        "ACLBUS_BACKEND": "nats",
        "ACLBUS_SUBJECT_PREFIX": prefix,
        "ACLBUS_STREAMS__MAX_BYTES": str(1 << 20),
        "ACLBUS_STREAMS__STORAGE": "memory",
        "ACLBUS_NATS__SERVERS": mode.server.url,
        "ACLBUS_NATS__CONNECT_TIMEOUT": "2",
        "ACLBUS_NATS__RECONNECT_TIME_WAIT": "0.1",
        # The backend and the plugins that carry credentials: no retry backoff to wait for.
        "ACLBUS_PLUGINS": "nats,auth,tls",
        "COLUMNS": "200",
    }
    return env | {_variable(k): v for k, v in auth.items()}


def _variable(key: str) -> str:
    """``TLS_CA_FILE`` → ``ACLBUS_TLS__CA_FILE``, ``TOKEN`` → ``ACLBUS_AUTH__TOKEN``."""
    if key.startswith("TLS_"):
        return f"ACLBUS_TLS__{key.removeprefix('TLS_')}"
    return f"ACLBUS_AUTH__{key}"


def use(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name in ("USER", "PASSWORD", "TOKEN", "NKEY_SEED_FILE", "CREDS_FILE"):
        monkeypatch.delenv(f"ACLBUS_NATS__{name}", raising=False)
        monkeypatch.delenv(f"ACLBUS_AUTH__{name}", raising=False)
    for name in ("TLS_CA_FILE", "TLS_CERT_FILE", "TLS_KEY_FILE"):
        monkeypatch.delenv(f"ACLBUS_NATS__{name}", raising=False)
        monkeypatch.delenv(_variable(name), raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def error_text(exc: BaseException) -> str:
    """The error, each of its causes and contexts, as str, repr and formatted traceback."""
    seen: list[BaseException] = []
    error: BaseException | None = exc
    while error is not None and error not in seen:
        seen.append(error)
        error = error.__cause__ or error.__context__
    shown = [f"{e!s}\n{e!r}" for e in seen]
    return "\n".join([*shown, *traceback.format_exception(exc)])


def objects_text(bus: Bus) -> str:
    """``repr`` and ``str`` of the settings, the bus and the backend."""
    things: list[Any] = [bus.settings, NatsSettings(), AuthSettings(), Settings(), bus, bus.backend]
    return "\n".join(f"{t!r}\n{t!s}" for t in things)


async def accepted_run(captured: dict[str, str]) -> None:
    """A bus from the environment: a message carried, another dead-lettered."""
    bus = Bus()
    got: list[ACLMessage] = []

    async def take(msg: ACLMessage) -> None:
        got.append(msg)

    async def fail(msg: ACLMessage) -> None:
        raise ValueError("cannot do it")

    bus.agent("bob").on()(take)
    bus.agent("worker").on()(fail)
    async with bus:
        await bus.send(ACLMessage(performative="inform", sender_id="alice", receiver_id="bob"))
        await bus.send(
            ACLMessage(performative=Performative.REQUEST, sender_id="a", receiver_id="worker")
        )
        deadline = asyncio.get_running_loop().time() + WAIT
        while not (got and await bus.dead_letters.list()):
            assert asyncio.get_running_loop().time() < deadline, "no delivery or dead letter"
            await asyncio.sleep(0.05)
        captured["the bus' description"] = json.dumps(await bus.describe(), default=str)
        captured["the settings, bus and backend (connected)"] = objects_text(bus)


async def refused_run(captured: dict[str, str]) -> None:
    bus = Bus()
    with pytest.raises((AuthenticationError, TLSError)) as caught:
        await asyncio.wait_for(bus.start(), WAIT)
    captured["the refusal, its causes and traceback"] = error_text(caught.value)
    captured["the settings, bus and backend (refused)"] = objects_text(bus)


def run_cli(env: dict[str, str], args: list[str]) -> tuple[int, str]:
    result = CliRunner(env=env).invoke(main, args)
    text = result.output + (error_text(result.exception) if result.exception else "")
    return result.exit_code, text


def leaks(secrets: dict[str, str], captured: dict[str, str]) -> list[str]:
    return [
        f"{label} shows in {where}"
        for label, secret in secrets.items()
        for where, text in captured.items()
        if secret in text
    ]


MODES = ["password", "token", "nkey", "creds", "mtls"]


@pytest.mark.parametrize("name", MODES)
def test_no_secret_shows_in_logs_errors_reprs_doctor_or_the_dlq(
    name: str,
    modes: dict[str, Mode],
    monkeypatch: pytest.MonkeyPatch,
    every_log_record: pytest.LogCaptureFixture,
) -> None:
    mode = modes[name]
    assert mode.secrets, "nothing to look for"
    prefix = "sec" + uuid.uuid4().hex[:10]
    captured: dict[str, str] = {}

    accepted = environment(mode, prefix, mode.accepted)
    use(monkeypatch, accepted)
    asyncio.run(accepted_run(captured))
    code, captured["aclbus doctor (accepted)"] = run_cli(accepted, ["doctor"])
    assert code == 0, captured["aclbus doctor (accepted)"]
    code, listed = run_cli(accepted, ["dlq", "ls", "--json"])
    assert code == 0, listed
    captured["aclbus dlq ls --json"] = listed
    [letter] = json.loads(listed)
    assert letter["reason"] == Reason.HANDLER_ERROR
    code, captured["aclbus dlq show"] = run_cli(accepted, ["dlq", "show", str(letter["sequence"])])
    assert code == 0, captured["aclbus dlq show"]

    refused = environment(mode, prefix, mode.refused)
    use(monkeypatch, refused)
    asyncio.run(refused_run(captured))
    code, captured["aclbus doctor (refused)"] = run_cli(refused, ["doctor"])
    assert code == 1, captured["aclbus doctor (refused)"]
    assert "NATS at" in captured["aclbus doctor (refused)"]

    records = every_log_record.records
    assert records, "no log record captured"
    captured["the log records"] = "\n".join(
        f"{r.name} {r.levelname} {r.getMessage()} {r.args!r}"
        + ("".join(traceback.format_exception(*r.exc_info)) if r.exc_info else "")
        for r in records
    )
    captured["the formatted log"] = every_log_record.text
    found = leaks(mode.secrets, captured)
    assert not found, "\n".join(found)


def test_the_scan_finds_a_secret_and_says_where() -> None:
    """The scan itself: a secret anywhere in what was captured is reported with its place."""
    found = leaks({"token": TOKEN}, {"a log line": f"connecting with {TOKEN}", "doctor": "ok"})
    assert found == ["token shows in a log line"]
