"""aclbus-auth: who a bus connects as, and what each agent may do.

Installed, the plugin (entry point ``auth``) reads ``ACLBUS_AUTH__*`` (or the ``[auth]`` table
of ``aclbus.toml``, `AuthSettings`) and gives the bus' backend its credentials through the
``aclbus_connection_options`` hook: a user and password, a token, an NKey seed file or a
``.creds`` file (one of them; two are a `ConfigurationError`). With nothing set it gives
nothing. Secrets are never logged nor shown in a repr; a seed or creds file that others may
read gets a warning.

Example:
    ```sh
    export ACLBUS_AUTH__NKEY_SEED_FILE=/etc/aclbus/billing.nk   # or USER + PASSWORD, TOKEN,
                                                                # CREDS_FILE
    ```

    In code, load `AuthPlugin` instead of the entry point:
    ``Bus(settings, plugins=[AuthPlugin(AuthSettings(token=...))], entry_points=False)``.

The guide (server configs, what each refusal says) is ``docs/security.md``.
"""

from __future__ import annotations

from aclbus import ConnectionOptions, Settings, hookimpl
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
from aclbus_auth.settings import AuthSettings

__all__ = [
    "AuthPlugin",
    "AuthSettings",
    "JWTError",
    "KeyKind",
    "NKey",
    "Permission",
    "ResponsePermission",
    "UserPermissions",
    "account_jwt",
    "aclbus_connection_options",
    "connection_options",
    "creds_text",
    "operator_jwt",
    "resolver_config",
    "user_jwt",
    "verify_jwt",
    "write_creds",
]


@hookimpl
def aclbus_connection_options(settings: Settings) -> ConnectionOptions | None:
    """The credentials of ``ACLBUS_AUTH__*`` and ``[auth]``; None when none are set."""
    return connection_options(AuthSettings())


class AuthPlugin:
    """The plugin with its settings given in code rather than read from the environment.

    Load it instead of the entry point (``Bus(..., plugins=[AuthPlugin(...)])`` with
    ``entry_points=False`` or ``ACLBUS_DISABLE_PLUGINS=auth``), not beside it: two plugins
    giving credentials is a `PluginError`.

    Args:
        settings: The auth settings; None reads them as the entry point does.
    """

    def __init__(self, settings: AuthSettings | None = None) -> None:
        self.settings = settings if settings is not None else AuthSettings()

    @hookimpl
    def aclbus_connection_options(self, settings: Settings) -> ConnectionOptions | None:
        """The credentials of this plugin's settings."""
        return connection_options(self.settings)
