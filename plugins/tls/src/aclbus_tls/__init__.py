"""aclbus-tls: TLS and mutual TLS for every backend's connection, configured once.

Installed, the plugin (entry point ``tls``) reads ``ACLBUS_TLS__*`` (or the ``[tls]`` table
of ``aclbus.toml``, `TLSSettings`) and gives the bus' backend its TLS through the
``aclbus_connection_options`` hook: the CA that signed the server's certificate, the client's
certificate and key for mutual TLS, and ``handshake_first``. With nothing set it gives nothing,
and the connection is what the backend makes of its URL (``tls://`` still uses TLS, with the
system's CAs).

Example:
    ```sh
    export ACLBUS_TLS__CA_FILE=/etc/aclbus/ca.pem
    export ACLBUS_TLS__CERT_FILE=/etc/aclbus/agent.pem      # mutual TLS
    export ACLBUS_TLS__KEY_FILE=/etc/aclbus/agent-key.pem
    ```

    In code, load `TLSPlugin` instead of the entry point:
    ``Bus(settings, plugins=[TLSPlugin(TLSSettings(ca_file=ca))], entry_points=False)``.

The guide (server configs, refusals, rotating certificates) is ``docs/security.md``.
"""

from __future__ import annotations

from aclbus import ConnectionOptions, Settings, hookimpl
from aclbus.connection_options import TLSOptions
from aclbus_tls.settings import TLSSettings

__all__ = ["TLSPlugin", "TLSSettings", "aclbus_connection_options", "connection_options"]


def connection_options(settings: TLSSettings) -> ConnectionOptions | None:
    """The TLS that ``settings`` give the connection; None when they set nothing.

    The files are read when the bus hands the options to its backend, so a path that is no
    certificate is a `ConfigurationError` naming the setting when the bus is made.
    """
    if (
        settings.ca_file is None
        and settings.cert_file is None
        and settings.key_file is None
        and not settings.handshake_first
    ):
        return None
    return ConnectionOptions(
        tls=TLSOptions(
            ca_file=settings.ca_file,
            cert_file=settings.cert_file,
            key_file=settings.key_file,
            handshake_first=settings.handshake_first,
        )
    )


@hookimpl
def aclbus_connection_options(settings: Settings) -> ConnectionOptions | None:
    """The TLS of ``ACLBUS_TLS__*`` and ``[tls]``; None when nothing is set."""
    return connection_options(TLSSettings())


class TLSPlugin:
    """The plugin with its settings given in code rather than read from the environment.

    Load it instead of the entry point (``Bus(..., plugins=[TLSPlugin(...)])`` with
    ``entry_points=False`` or ``ACLBUS_DISABLE_PLUGINS=tls``), not beside it: two plugins
    giving TLS is a `PluginError`.

    Args:
        settings: The TLS settings; None reads them as the entry point does.
    """

    def __init__(self, settings: TLSSettings | None = None) -> None:
        self.settings = settings if settings is not None else TLSSettings()

    @hookimpl
    def aclbus_connection_options(self, settings: Settings) -> ConnectionOptions | None:
        """The TLS of this plugin's settings."""
        return connection_options(self.settings)
