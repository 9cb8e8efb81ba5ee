"""A nats-server in operator mode (decentralized JWT auth), made in the test with `aclbus_auth.jwt`.

One operator signs three accounts the server preloads (the system account, ``APP`` with
JetStream and ``PLAIN`` without), and a fourth, ``STRANGER``, that it does not know. Users
connect with ``.creds`` files made by `OperatorMode.creds`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from aclbus_auth.jwt import (
    NKey,
    UserPermissions,
    account_jwt,
    creds_text,
    operator_jwt,
    resolver_config,
    user_jwt,
    write_creds,
)
from aclbus_nats.server import EmbeddedServer

__all__ = ["OperatorMode", "operator_server"]


@dataclass
class OperatorMode:
    """The keys of an operator-mode server, its config, and the creds files made so far.

    Attributes:
        directory: Where the creds files are written.
        seeds: Every seed made here and the user JWTs issued: none may show anywhere.
    """

    directory: Path
    operator: NKey = field(default_factory=lambda: NKey.create("operator"))
    system: NKey = field(default_factory=lambda: NKey.create("account"))
    account: NKey = field(default_factory=lambda: NKey.create("account"))
    plain: NKey = field(default_factory=lambda: NKey.create("account"))
    stranger: NKey = field(default_factory=lambda: NKey.create("account"))
    tokens: list[str] = field(default_factory=list)

    @property
    def config(self) -> str:
        """The server's ``operator``, ``system_account`` and memory resolver configuration."""
        o = self.operator
        return resolver_config(
            operator_jwt(o, system_account=self.system.public_key),
            system_account=self.system.public_key,
            accounts={
                self.system.public_key: account_jwt(
                    self.system.public_key, o, name="SYS", jetstream=False
                ),
                self.account.public_key: account_jwt(self.account.public_key, o, name="APP"),
                self.plain.public_key: account_jwt(
                    self.plain.public_key, o, name="PLAIN", jetstream=False
                ),
            },
        )

    def creds(
        self,
        name: str,
        *,
        permissions: UserPermissions | None = None,
        expires: dt.datetime | None = None,
        issued_at: dt.datetime | None = None,
        signer: NKey | None = None,
        wrong_seed: bool = False,
    ) -> tuple[Path, NKey, str]:
        """A new user of ``APP`` (or of ``signer``) and its creds file.

        Args:
            name: The user's name, and the file's.
            permissions: The user JWT's permissions.
            expires: The JWT's ``exp``.
            issued_at: The JWT's ``iat``.
            signer: The account that signs the JWT (default: ``APP``).
            wrong_seed: Put another user's seed in the file, not the JWT's own.

        Returns:
            The creds file, the user's key, and its JWT.
        """
        user = NKey.create("user")
        token = user_jwt(
            user.public_key,
            signer or self.account,
            name=name,
            permissions=permissions,
            issued_at=issued_at,
            expires=expires,
        )
        self.tokens.append(token)
        path = self.directory / f"{name}.creds"
        if not wrong_seed:
            return write_creds(path, token, user), user, token
        other = NKey.create("user")
        path.touch(mode=0o600)
        path.write_text(creds_text(token, user).replace(user.seed, other.seed))
        return path, user, token

    def secrets(self) -> list[str]:
        """Every seed (operator, accounts) and every issued JWT's signature and creds seed."""
        keys = (self.operator, self.system, self.account, self.plain, self.stranger)
        found = [k.seed for k in keys]
        for path in self.directory.glob("*.creds"):
            lines = path.read_text().splitlines()
            found.append(lines[lines.index("-----BEGIN USER NKEY SEED-----") + 1])
        found += [t.rsplit(".", 1)[1] for t in self.tokens if t.count(".") == 2]
        return found


def operator_server(mode: OperatorMode, name: str = "aclbus-operator") -> EmbeddedServer:
    """An embedded nats-server (JetStream on) trusting ``mode``'s operator, not started."""
    return EmbeddedServer(server_name=name, extra_config=mode.config)
