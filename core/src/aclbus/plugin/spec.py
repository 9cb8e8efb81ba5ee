"""The hook specifications: every hook a plugin may implement.

Registration hooks take a ``register`` callback rather than returning lists, so that an error
in what a plugin registers names that plugin. ``docs/plugins.md`` documents each hook under its
exact signature; a test keeps the page and this module in step.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pluggy

from aclbus.backend import BackendFactory, Capabilities
from aclbus.codec import Codec
from aclbus.connection_options import ConnectionOptions
from aclbus.middleware import MiddlewareFactory
from aclbus.permissions import Permissions
from aclbus.plugin import PROJECT
from aclbus.plugin.bench_columns import ColumnFactory
from aclbus.settings import Settings

__all__ = [
    "BackendRegister",
    "BenchmarkRegister",
    "CodecRegister",
    "CommandRegister",
    "aclbus_bus_provisioned",
    "aclbus_bus_started",
    "aclbus_bus_stopping",
    "aclbus_connection_options",
    "aclbus_connection_permissions",
    "aclbus_middlewares",
    "aclbus_register_backends",
    "aclbus_register_benchmarks",
    "aclbus_register_codecs",
    "aclbus_register_commands",
    "aclbus_required_capabilities",
]

_spec = pluggy.HookspecMarker(PROJECT)

Bus = Any
"""The `aclbus.Bus` a lifecycle hook is called with.

Named here without being imported: the bus imports this module (to call the hooks), so an
import of the bus here would make an import cycle. Annotate implementations with
``aclbus.Bus``.
"""

BackendRegister = Callable[[str, "BackendFactory"], None]
"""``register(name, factory)``: offer a backend under ``name`` (what ``ACLBUS_BACKEND`` names)."""

BenchmarkRegister = Callable[[str, "ColumnFactory"], None]
"""``register(name, factory)``: offer an ``aclbus bench`` column (``"raw"``, ``"faststream"``)."""

CodecRegister = Callable[["Codec"], None]
"""``register(codec)``: offer a body codec for its ``content_type``."""

CommandRegister = Callable[[Any], None]
"""``register(command)``: add a ``click.Command`` (or ``click.Group``) to the ``aclbus`` CLI."""


@_spec
def aclbus_register_backends(register: BackendRegister) -> None:
    """Register backend factories by name.

    Args:
        register: Call ``register("nats", NatsBackend)``; the factory is called with the
            bus' `Settings` and returns a `Backend`. Two plugins registering one name is an
            error naming both.

    .. versionadded:: 0.1
    """


@_spec
def aclbus_register_codecs(register: CodecRegister) -> None:
    """Register body codecs, one per content type.

    Args:
        register: Call ``register(MsgpackCodec())``; the codec's ``content_type`` is its key.

    .. versionadded:: 0.1
    """


@_spec
def aclbus_register_benchmarks(register: BenchmarkRegister) -> None:
    """Register ``aclbus bench`` columns: other ways of moving messages to compare with.

    Args:
        register: Call ``register("raw", make_raw_column)``. The factory is called with the
            bench's started `Bus` (which tells where the server is) and returns an
            `aclbus.bench.Column`, or None where it does not apply (a NATS column on a bus
            that runs on memory). Two plugins registering one name is an error naming both.

    .. versionadded:: 0.1
    """


@_spec
def aclbus_middlewares(settings: Settings) -> Sequence[MiddlewareFactory]:
    """Return middleware factories for a bus.

    The results of all plugins are joined in hook call order; the first factory makes the
    outermost middleware. Use ``tryfirst``/``trylast`` on the hookimpl to move a plugin's
    middleware out or in; nothing else orders them.

    Args:
        settings: The bus' settings, to decide what (if anything) to add.

    Returns:
        Factories ``Callable[[Bus], Middleware]``, each called once when the bus starts.

    .. versionadded:: 0.1
    """
    return ()


@_spec
def aclbus_required_capabilities(settings: Settings) -> Capabilities | None:
    """Declare what the plugin needs from the backend.

    A bus whose backend lacks a capability a plugin requires refuses to start, naming the
    plugin, the backend and the missing capabilities.

    Args:
        settings: The bus' settings (a plugin may need more when configured so).

    Returns:
        The capabilities needed, or None for none.

    .. versionadded:: 0.1
    """
    return None


@_spec
def aclbus_connection_options(settings: Settings) -> ConnectionOptions | None:
    """Contribute TLS or credentials to the backend's connection.

    The results of all plugins are joined: each part (``tls``, ``credentials``) may come from
    one plugin only; two plugins giving the same part is a `PluginError` naming both. The bus
    hands the joined options to its backend (`Backend.configure_connection`) when it is made,
    before it connects; a backend without a connection (memory) ignores them.

    Args:
        settings: The bus' settings (``settings.backend`` says which backend connects).

    Returns:
        The plugin's part, or None when it has nothing to add (nothing configured): an
        installed plugin that is not configured must change nothing.

    .. versionadded:: 0.2
    """
    return None


@_spec
def aclbus_bus_provisioned(bus: Bus) -> Awaitable[None] | None:
    """Called when a bus has connected and provisioned its streams, before any agent starts.

    The place for a plugin to provision what it needs itself (a KV bucket, a stream) or to
    check the server, so that the first delivery finds it ready. The bus' middlewares are
    made by then (`Bus.middlewares`). An exception fails `Bus.start`, which closes the
    backend again.

    Args:
        bus: The bus; an implementation may return an awaitable, which the bus awaits.

    .. versionadded:: 0.2
    """
    return None


@_spec
def aclbus_bus_started(bus: Bus) -> Awaitable[None] | None:
    """Called when a bus has connected, provisioned and started its agents.

    Args:
        bus: The bus; an implementation may return an awaitable, which the bus awaits.

    .. versionadded:: 0.1
    """
    return None


@_spec
def aclbus_bus_stopping(bus: Bus) -> Awaitable[None] | None:
    """Called when a bus begins to stop, before its agents and backend are stopped.

    Args:
        bus: The bus; an implementation may return an awaitable, which the bus awaits.

    .. versionadded:: 0.1
    """
    return None


@_spec
def aclbus_register_commands(register: CommandRegister) -> None:
    """Register commands of the ``aclbus`` command line.

    The CLI asks for them only when it needs them: to run a command that is not one of its
    own, or to list every command (``aclbus --help``). A plugin that fails to load, or to
    register, leaves its commands out with a warning on stderr; ``aclbus --help`` and the
    core's commands keep working.

    Args:
        register: Call ``register(command)`` with a ``click.Command`` or ``click.Group``; its
            ``name`` is the command's (``aclbus policy ...``). A name the core or another
            plugin already uses is an error naming both.

    .. versionadded:: 0.2
    """


@_spec
def aclbus_connection_permissions(settings: Settings) -> Permissions | None:
    """Return what the bus' connection may do, for a backend that enforces it itself.

    The bus hands the result to `Backend.enforce` before connecting. The memory backend then
    refuses what nats-server would refuse the same principal, so that permission logic is
    testable without a server; the NATS backend ignores it (the server enforces the policy
    rendered for it). At most one plugin may return permissions.

    Args:
        settings: The bus' settings (the principal and its policy, for the auth plugin).

    Returns:
        The connection's permissions, or None to leave it unrestricted.

    .. versionadded:: 0.2
    """
    return None
