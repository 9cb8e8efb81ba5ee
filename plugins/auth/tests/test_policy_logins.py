"""A policy's users logging in with an NKey and, in operator mode, with a user JWT.

The matrix (test_policy_matrix.py) logs its users in with passwords; here the same policy
rules hold for the other two ways a policy's user authenticates, on real nats-servers:

- NKey users: ``aclbus policy render`` gives ``users = [{nkey: "U...", permissions}]``, and a
  bus logs in with ``ACLBUS_AUTH__NKEY_SEED_FILE`` while ``ACLBUS_AUTH__USER`` names its user
  in the policy;
- operator mode: the account signs each user a JWT holding the user's permissions
  (`jwt_permissions`), and a bus logs in with its ``.creds`` file.

Either way, what the policy allows works and what it does not is refused at once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from aclbus import ACLMessage, Bus, Settings
from aclbus.errors import ConfigurationError, PermissionDenied
from aclbus.settings import StreamLimits
from aclbus.testing.collector import Collector
from aclbus_auth import AuthPlugin, AuthSettings
from aclbus_auth.credentials import credentials
from aclbus_auth.jwt import NKey, account_jwt, operator_jwt, resolver_config, user_jwt, write_creds
from aclbus_auth.policy import jwt_permissions, load_policy, render_nats_conf
from aclbus_nats.backend import NatsBackend
from aclbus_nats.server import EmbeddedServer
from aclbus_nats.settings import NatsSettings

PREFIX = "pl"
FAST = 1.0
ADMIN_PASSWORD = f"pw-{uuid.uuid4().hex}"
KEYS = {name: NKey.create("user") for name in ("admin", "alice", "bob", "carol")}


def _policy(admin: str) -> str:
    users = "".join(
        f'\n[users.{name}]\nnkey = "{KEYS[name].public_key}"\nagents = ["{name}"]\n'
        for name in ("alice", "bob", "carol")
    )
    return f"""
prefix = "{PREFIX}"

[users.admin]
{admin}
admin = true
{users}
[agents.alice]
send = ["bob"]

[agents.bob]
send = ["alice"]

[agents.carol]
"""


def _seed_file(directory: Path, name: str) -> Path:
    path = directory / f"{name}.nk"
    path.touch(mode=0o600)
    path.write_text(KEYS[name].seed + "\n")
    return path


def _settings() -> Settings:
    return Settings(
        backend="nats",
        subject_prefix=PREFIX,
        request_timeout=5.0,
        streams=StreamLimits(max_bytes=1 << 20, storage="memory"),
    )


def _bus(server: EmbeddedServer, auth: AuthSettings) -> Bus:
    settings = _settings()
    nats = NatsSettings(servers=[server.url], connect_timeout=2.0, publish_timeout=5.0)
    return Bus(
        settings,
        backend=NatsBackend(settings, nats=nats),
        plugins=[AuthPlugin(auth)],
        entry_points=False,
    )


Login = Callable[[str], AuthSettings]


async def _alice_sends_to_bob_but_not_to_carol(server: EmbeddedServer, login: Login) -> None:
    """The policy's rules, whatever the login: the admin provisions, alice may send to bob
    only, and bob's bus gets what she sends."""
    buses = []
    try:
        admin = _bus(server, login("admin"))
        await admin.start()
        buses.append(admin)
        got: Collector[ACLMessage] = Collector()
        bob = _bus(server, login("bob"))

        @bob.agent("bob").on()
        async def handle(msg: ACLMessage) -> None:
            got.add(msg)

        await bob.start()
        buses.append(bob)
        alice = _bus(server, login("alice"))
        await alice.start()
        buses.append(alice)
        security = (await alice.describe())["server"]["security"]  # what aclbus doctor shows
        assert (security["policy_user"], security["inbox_prefix"]) == ("alice", "_INBOX_alice")
        sent = ACLMessage(performative="inform", sender_id="alice", receiver_id="bob")
        await alice.send(sent)
        [handled] = await got.wait_for(1)
        assert handled.message_id == sent.message_id
        started = time.monotonic()
        with pytest.raises(PermissionDenied) as refused:
            await alice.send(
                ACLMessage(performative="inform", sender_id="alice", receiver_id="carol")
            )
        assert time.monotonic() - started < FAST
        assert refused.value.subject.lower() == f"{PREFIX}.agent.carol"
    finally:
        for bus in reversed(buses):
            await bus.stop()


# -- NKey users ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nkey_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedServer, Path]]:
    directory = tmp_path_factory.mktemp("nkeys")
    policy_file = directory / "policy.toml"
    policy_file.write_text(_policy('password = "$PL_ADMIN_PASSWORD"'))
    rendered = render_nats_conf(load_policy(policy_file))
    assert f'nkey: "{KEYS["alice"].public_key}"' in rendered
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PL_ADMIN_PASSWORD", ADMIN_PASSWORD)
        with EmbeddedServer(server_name="aclbus-nkeys", extra_config=rendered) as server:
            yield server, policy_file


async def test_nkey_users_of_a_policy_are_held_to_it(
    nkey_world: tuple[EmbeddedServer, Path], tmp_path: Path
) -> None:
    server, policy_file = nkey_world

    def login(name: str) -> AuthSettings:
        if name == "admin":
            return AuthSettings(user="admin", password=ADMIN_PASSWORD, policy_file=policy_file)
        seed = _seed_file(tmp_path, name)
        return AuthSettings(user=name, nkey_seed_file=seed, policy_file=policy_file)

    await _alice_sends_to_bob_but_not_to_carol(server, login)


def test_the_user_beside_a_seed_or_creds_file_names_the_policy_user_only(tmp_path: Path) -> None:
    """With a policy, ``USER`` and a seed file are one login (the file authenticates); without
    one, or with a password too, they are still two ways and refused."""
    seed = _seed_file(tmp_path, "alice")
    policy = tmp_path / "policy.toml"
    policy.write_text(_policy('password = "$X"'))
    found = credentials(AuthSettings(user="alice", nkey_seed_file=seed, policy_file=policy))
    assert type(found).__name__ == "NKeySeedFile"
    with pytest.raises(ConfigurationError, match="choose one way"):
        credentials(AuthSettings(user="alice", nkey_seed_file=seed))
    with pytest.raises(ConfigurationError, match="choose one way"):
        credentials(
            AuthSettings(user="alice", password="pw", nkey_seed_file=seed, policy_file=policy)
        )


# -- operator mode: the permissions in each user's JWT -------------------------------------------


@pytest_asyncio.fixture
async def operator_world(tmp_path: Path) -> AsyncIterator[tuple[EmbeddedServer, Login]]:
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(_policy(f'nkey = "{KEYS["admin"].public_key}"'))
    policy = load_policy(policy_file)
    operator, system, account = (NKey.create(kind) for kind in ("operator", "account", "account"))
    config = resolver_config(
        operator_jwt(operator, system_account=system.public_key),
        system_account=system.public_key,
        accounts={
            system.public_key: account_jwt(
                system.public_key, operator, name="SYS", jetstream=False
            ),
            account.public_key: account_jwt(account.public_key, operator, name="APP"),
        },
    )
    creds, sizes = {}, {}
    for name, key in KEYS.items():
        # The admin's JWT holds no permissions (it may do everything); each agent's user,
        # exactly what the policy renders for it.
        permissions = None if name == "admin" else jwt_permissions(policy, name)
        token = user_jwt(key.public_key, account, name=name, permissions=permissions)
        creds[name] = write_creds(tmp_path / f"{name}.creds", token, key)
        sizes[name] = len(token)

    assert sizes["alice"] > 4096  # why the server needs a larger max_control_line

    def login(name: str) -> AuthSettings:
        return AuthSettings(user=name, creds_file=creds[name], policy_file=policy_file)

    # A user JWT with a policy's permissions is a few KB, and travels in the CONNECT line:
    # nats-server's default max_control_line (4 KB) refuses it (docs/security.md).
    config += "\nmax_control_line: 64KB\n"
    with EmbeddedServer(server_name="aclbus-operator-policy", extra_config=config) as server:
        yield server, login


async def test_operator_mode_users_are_held_to_the_policy_by_their_jwts(
    operator_world: tuple[EmbeddedServer, Login],
) -> None:
    server, login = operator_world
    await _alice_sends_to_bob_but_not_to_carol(server, login)
