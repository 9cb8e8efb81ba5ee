"""aclbus-auth: who a bus connects as, and what each agent may do.

Installed, the plugin (entry point ``auth``) reads ``ACLBUS_AUTH__*`` (or the ``[auth]`` table
of ``aclbus.toml``, `AuthSettings`) and gives the bus' backend its credentials through the
``aclbus_connection_options`` hook: a user and password, a token, an NKey seed file or a
``.creds`` file (one of them; two are a `ConfigurationError`). With nothing set it gives
nothing. Secrets are never logged nor shown in a repr; a seed or creds file that others may
read gets a warning. With ``ACLBUS_AUTH__POLICY_FILE`` (and ``ACLBUS_AUTH__USER``, the policy's
user the bus connects as) it also holds the bus to that user's permissions: the bus sends only
as the user's agents (`aclbus_auth.policy.SenderCheck`), and a backend that enforces
permissions itself (memory) refuses what nats-server would refuse. ``aclbus policy render``
turns the policy into nats-server's configuration (`aclbus_auth.policy`).

Example:
    ```sh
    export ACLBUS_AUTH__NKEY_SEED_FILE=/etc/aclbus/billing.nk   # or USER + PASSWORD, TOKEN,
                                                                # CREDS_FILE
    ```

    In code, load `AuthPlugin` instead of the entry point:
    ``Bus(settings, plugins=[AuthPlugin(AuthSettings(token=...))], entry_points=False)``;
    ``AuthPlugin(AuthSettings(user=..., password=..., policy_file=...))`` gives one bus both
    its credentials and its policy.

The guide (server configs, what each refusal says) is ``docs/security.md``.
"""

from __future__ import annotations

from aclbus_auth.credentials import connection_options
from aclbus_auth.jwt import (
    JWTError,
    KeyKind,
    NKey,
    Permission,
    ResponsePermission,
    UserPermissions,
    account_jwt,
    creds_text,
    operator_jwt,
    resolver_config,
    user_jwt,
    verify_jwt,
    write_creds,
)
from aclbus_auth.plugin import AuthPlugin
from aclbus_auth.policy import PolicyPlugin
from aclbus_auth.settings import AuthSettings

__all__ = [
    "AuthPlugin",
    "AuthSettings",
    "JWTError",
    "KeyKind",
    "NKey",
    "Permission",
    "PolicyPlugin",
    "ResponsePermission",
    "UserPermissions",
    "account_jwt",
    "aclbus_connection_options",
    "aclbus_connection_permissions",
    "aclbus_middlewares",
    "aclbus_register_commands",
    "connection_options",
    "creds_text",
    "operator_jwt",
    "resolver_config",
    "user_jwt",
    "verify_jwt",
    "write_creds",
]

# The entry point's hooks: an AuthPlugin that reads ACLBUS_AUTH__* each time a bus asks.
_default = AuthPlugin()
aclbus_connection_options = _default.aclbus_connection_options
aclbus_connection_permissions = _default.aclbus_connection_permissions
aclbus_middlewares = _default.aclbus_middlewares
aclbus_register_commands = _default.aclbus_register_commands
