"""aclbus-dedup: a message is stored once and handled once, per message id, within a window.

Publish side (`PublishRetry`): the bus sends every persistent message with its message id as
the broker's dedup key (``Nats-Msg-Id``); an ambiguous publish (`PublishTimeout`, or
`BackendClosed` while the bus runs) is sent again, the same message with the same id, a few
times with a short backoff, so it is stored once. A PubAck with ``duplicate=True`` is returned
as is and counted.

Consume side (`ConsumeOnce`): before a handler runs, its delivery claims ``{agent}.{message_id}``
in the KV bucket ``{prefix}-dedup`` (TTL = the window); a redelivery or a duplicate of a message
already done is acked without running the handler again (see `aclbus_dedup.claims`).

Settings: `DedupSettings` (``ACLBUS_DEDUP__*``, ``[dedup]`` in ``aclbus.toml``). Counters:
``aclbus_dedup.stats(bus)``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import fields
from typing import TYPE_CHECKING

from aclbus.backend import Capabilities
from aclbus.errors import ConfigurationError
from aclbus.plugin import hookimpl
from aclbus_dedup.claims import Claim, Claims, Outcome, Record, Status, claim_key
from aclbus_dedup.middleware import ConsumeOnce, PublishRetry
from aclbus_dedup.received import ClaimedReceived
from aclbus_dedup.settings import DedupSettings
from aclbus_dedup.stats import DedupStats

if TYPE_CHECKING:
    from aclbus import Bus
    from aclbus.middleware import MiddlewareFactory
    from aclbus.settings import Settings

__all__ = [
    "Claim",
    "ClaimedReceived",
    "Claims",
    "ConsumeOnce",
    "DedupSettings",
    "DedupStats",
    "Outcome",
    "PublishRetry",
    "Record",
    "Status",
    "claim_key",
    "stats",
]


@hookimpl
def aclbus_required_capabilities(settings: Settings) -> Capabilities | None:
    """The broker's dedup window for the publish side, KV buckets for the consume side."""
    dedup = DedupSettings()
    if not (dedup.publish or dedup.consume):
        return None
    return Capabilities(dedup_window=dedup.publish, kv=dedup.consume)


@hookimpl
def aclbus_middlewares(settings: Settings) -> Sequence[MiddlewareFactory]:
    """`PublishRetry` and `ConsumeOnce`, each when its side is enabled."""
    dedup = DedupSettings()
    factories: list[MiddlewareFactory] = []
    if dedup.publish:
        factories.append(lambda bus: PublishRetry(bus, dedup))
    if dedup.consume:
        factories.append(lambda bus: ConsumeOnce(bus, dedup))
    return factories


@hookimpl
def aclbus_bus_provisioned(bus: Bus) -> Awaitable[None] | None:
    """Provision the claims bucket before any agent starts, so no delivery waits for it."""
    for middleware in bus.middlewares:
        if isinstance(middleware, ConsumeOnce):
            return _open(middleware)
    return None


async def _open(middleware: ConsumeOnce) -> None:
    await middleware.open()


@hookimpl
def aclbus_bus_stopping(bus: Bus) -> Awaitable[None] | None:
    """End the waits for an unreachable bucket, so that the agents can stop at once."""
    for middleware in bus.middlewares:
        if isinstance(middleware, ConsumeOnce):
            return middleware.close()
    return None


def stats(bus: Bus) -> DedupStats:
    """A snapshot of what the dedup plugin of ``bus`` did since the bus started.

    Raises:
        ConfigurationError: The plugin is not active on ``bus`` (not loaded, both sides
            disabled, or the bus not started).
    """
    parts = [mw.stats for mw in bus.middlewares if isinstance(mw, PublishRetry | ConsumeOnce)]
    if not parts:
        raise ConfigurationError(
            "the dedup plugin is not active on this bus: start the bus, and load the plugin "
            "(ACLBUS_PLUGINS, or Bus(plugins=[aclbus_dedup])) with at least one side enabled"
        )
    total = DedupStats()
    for part in parts:
        for field in fields(DedupStats):
            setattr(total, field.name, getattr(total, field.name) + getattr(part, field.name))
    return total
