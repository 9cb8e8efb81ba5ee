"""`AuthPlugin`: the whole auth plugin, credentials and policy, as one object.

The entry point ``auth`` is the module `aclbus_auth`, whose hooks are those of an `AuthPlugin`
that reads ``ACLBUS_AUTH__*`` each time a bus asks. Make one with settings in code to run
several buses, each its own user, in one process.
"""

from __future__ import annotations

from aclbus.connection_options import ConnectionOptions
from aclbus.plugin import hookimpl
from aclbus.settings import Settings
from aclbus_auth.credentials import connection_options
from aclbus_auth.policy import PolicyPlugin

__all__ = ["AuthPlugin"]


class AuthPlugin(PolicyPlugin):
    """The auth plugin with its settings given in code rather than read from the environment.

    It gives the connection its credentials (`aclbus_connection_options`) and, with a
    ``policy_file``, the user's permissions and the sender check (`PolicyPlugin`): on NATS
    the server enforces them, on memory the backend does. Load it instead of the entry point
    (``Bus(..., plugins=[AuthPlugin(...)])`` with ``entry_points=False`` or
    ``ACLBUS_DISABLE_PLUGINS=auth``), not beside it: two plugins giving credentials is a
    `PluginError`.

    Args:
        settings: The auth settings; None reads ``ACLBUS_AUTH__*`` and ``[auth]`` each time
            a bus asks, as the entry point does.

    Example:
        ```python
        auth = AuthPlugin(AuthSettings(user="worker-1", password=secret, policy_file=path))
        bus = Bus(settings, plugins=[auth], entry_points=False)
        ```
    """

    @hookimpl
    def aclbus_connection_options(self, settings: Settings) -> ConnectionOptions | None:
        """The credentials of this plugin's settings; None when none are set."""
        return connection_options(self.auth_settings())
