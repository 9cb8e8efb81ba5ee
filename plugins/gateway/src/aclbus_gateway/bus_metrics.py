"""The gateway's bus, counted by the metrics plugin without ``ACLBUS_METRICS__ENABLED``.

The gateway serves ``/metrics``, so the bus it makes counts its messages by default. Rather
than a second metrics middleware, `MetricsOn` returns the metrics plugin's own, and only when
the plugin's settings leave it off: with ``ACLBUS_METRICS__ENABLED=true`` the plugin adds it
itself, and `MetricsOn` adds nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import aclbus_metrics
from aclbus import Bus, Settings, hookimpl
from aclbus.middleware import MiddlewareFactory
from aclbus_metrics import MetricsSettings

__all__ = ["MetricsOn", "gateway_bus"]


class MetricsOn:
    """A plugin object: the metrics plugin's middleware on one bus, when it is not enabled."""

    @hookimpl(tryfirst=True)
    def aclbus_middlewares(self, settings: Settings) -> Sequence[MiddlewareFactory]:
        """The metrics middleware, outermost, unless the metrics plugin adds it already."""
        metrics = MetricsSettings()
        if metrics.enabled:
            return ()
        enabled = metrics.model_copy(update={"enabled": True})
        return [lambda bus: aclbus_metrics.middleware_for(bus, enabled)]


def gateway_bus(settings: Settings | None = None, *, metrics: bool = True) -> Bus:
    """The bus a gateway makes for itself (not started).

    Args:
        settings: The bus' settings (default: the environment and ``aclbus.toml``).
        metrics: Count its messages for ``/metrics`` (`MetricsOn`).
    """
    return Bus(settings, plugins=[MetricsOn()] if metrics else ())
