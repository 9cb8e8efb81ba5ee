"""aclbus-ordering: per-key order for the handlers that ask for it, with gap detection.

Installed, the plugin (entry point ``ordering``) puts the `Ordering` middleware on every bus.

- **Publish**: a persistent message with a ``routing_key`` and/or a ``correlation_id`` (its
  conversation) gets a sequence number per key, per sender and subject, in the headers
  ``aclbus-order-rk`` / ``aclbus-order-conv`` (see `aclbus_ordering.keys`).
- **Consume**: a handler marked `ordered` gets the messages of one key one at a time, each
  sender's in the order it published them; different keys run in parallel (up to
  ``handler_concurrency``). A message ahead of its turn waits briefly, then goes back to the
  broker (``nack(delay=...)``) until the one before it has run; a redelivery of a message
  already handled is acked and skipped. A message that does not come within ``gap_timeout`` is
  declared missing — a `Gap`: logged, counted, passed to ``on_gap`` callbacks and to the next
  handled message as ``delivery.state["ordering.gap"]`` — and the key goes on.
- Other handlers, ``at_most_once`` messages and messages without a stamp pass straight through.

Example:
    ```python
    import aclbus_ordering

    @worker.on(Performative.INFORM)
    @aclbus_ordering.ordered(key="routing_key")
    async def apply(msg: ACLMessage) -> None: ...

    async with bus:
        aclbus_ordering.ordering(bus).on_gap(alert)
    ```

Settings: `OrderingSettings` (``ACLBUS_ORDERING__*``, ``[ordering]`` in ``aclbus.toml``). The
backend must keep publish order and offer acks and delayed nacks: a bus on one that does not
is refused when it is made (`aclbus.CapabilityError`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from aclbus.backend import Capabilities
from aclbus.errors import ConfigurationError
from aclbus.plugin import hookimpl
from aclbus_ordering.keys import KeyKind, OrderSpec, ordered
from aclbus_ordering.middleware import (
    LATE_REASON,
    GapCallback,
    LateMessage,
    Ordering,
    OrderingStats,
)
from aclbus_ordering.series import Gap, SeriesId
from aclbus_ordering.settings import OrderingSettings

if TYPE_CHECKING:
    from aclbus import Bus
    from aclbus.middleware import MiddlewareFactory
    from aclbus.settings import Settings

__all__ = [
    "LATE_REASON",
    "REQUIRED_CAPABILITIES",
    "Gap",
    "GapCallback",
    "KeyKind",
    "LateMessage",
    "OrderSpec",
    "Ordering",
    "OrderingPlugin",
    "OrderingSettings",
    "OrderingStats",
    "SeriesId",
    "aclbus_bus_started",
    "aclbus_middlewares",
    "aclbus_required_capabilities",
    "ordered",
    "ordering",
]

REQUIRED_CAPABILITIES = Capabilities(ordered=True, ack=True, nack_delay=True)
"""Publish order kept by the broker, acks, and delayed nacks to hold messages back."""


@hookimpl
def aclbus_middlewares(settings: Settings) -> Sequence[MiddlewareFactory]:
    """The `Ordering` middleware, with settings from ``ACLBUS_ORDERING__*`` / ``[ordering]``."""
    ordering_settings = OrderingSettings()
    return [lambda bus: Ordering(bus, ordering_settings)]


@hookimpl
def aclbus_required_capabilities(settings: Settings) -> Capabilities:
    """Order, acks and delayed nacks, checked when a bus is made."""
    return REQUIRED_CAPABILITIES


@hookimpl
def aclbus_bus_started(bus: Bus) -> None:
    """Refuse a bus with two ordering middlewares (the entry point and an `OrderingPlugin`).

    Raises:
        ConfigurationError: The plugin is loaded twice on ``bus``.
    """
    found = [m for m in bus.middlewares if isinstance(m, Ordering)]
    if len(found) > 1:
        raise ConfigurationError(
            f"the ordering plugin is loaded {len(found)} times on this bus: every message "
            "would be numbered and ordered twice. Load OrderingPlugin(...) with the entry "
            "point disabled (ACLBUS_DISABLE_PLUGINS=ordering, or Bus(entry_points=False))"
        )


class OrderingPlugin:
    """The plugin with its settings given in code rather than read from the environment.

    Load it instead of the entry point (``Bus(..., plugins=[OrderingPlugin(...)])`` with
    ``entry_points=False`` or ``ACLBUS_DISABLE_PLUGINS=ordering``), not beside it.

    Args:
        settings: The settings; None reads them as the entry point does.
        on_gap: Called with every gap declared on a bus that loads this plugin.
    """

    def __init__(
        self, settings: OrderingSettings | None = None, *, on_gap: GapCallback | None = None
    ) -> None:
        self.settings = settings if settings is not None else OrderingSettings()
        self.on_gap = on_gap

    @hookimpl
    def aclbus_middlewares(self, settings: Settings) -> Sequence[MiddlewareFactory]:
        """The `Ordering` middleware with this plugin's settings."""
        return [lambda bus: Ordering(bus, self.settings, self.on_gap)]

    @hookimpl
    def aclbus_required_capabilities(self, settings: Settings) -> Capabilities:
        """Order, acks and delayed nacks, checked when a bus is made."""
        return REQUIRED_CAPABILITIES

    @hookimpl
    def aclbus_bus_started(self, bus: Bus) -> None:
        """Refuse a bus with two ordering middlewares."""
        aclbus_bus_started(bus)


def ordering(bus: Bus) -> Ordering:
    """The `Ordering` middleware of a started bus: its stats, its recent gaps, `Ordering.on_gap`.

    Raises:
        ConfigurationError: The plugin is not loaded on ``bus``, or the bus is not started.
    """
    for middleware in bus.middlewares:
        if isinstance(middleware, Ordering):
            return middleware
    raise ConfigurationError(
        "the ordering plugin is not active on this bus: start the bus first, and load the "
        "plugin (installed aclbus-ordering with entry points, or plugins=[OrderingPlugin()])"
    )
