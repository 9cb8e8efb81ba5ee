"""aclbus-audit: one log line per message an agent handles, with the outcome.

Installed (entry point ``audit``), it puts the `Audit` consume middleware on every bus. What it
records is configured by `AuditSettings` (``[audit]`` in aclbus.toml, ``ACLBUS_AUDIT__*``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from aclbus import Bus, Delivery, Middleware, Performative, Settings, hookimpl
from aclbus.middleware import ConsumeNext, MiddlewareFactory
from aclbus_audit.settings import AuditSettings

__all__ = ["Audit", "AuditSettings", "aclbus_middlewares"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}


class Audit(Middleware):
    """Logs each delivery an agent handles: who, what, from whom, and how it ended.

    Args:
        settings: What to record and where.
    """

    def __init__(self, settings: AuditSettings) -> None:
        self.wanted: frozenset[Performative] | None = settings.wanted()
        self.level = _LEVELS[settings.level]
        self.log = logging.getLogger(settings.logger)

    async def consume(self, delivery: Delivery, call_next: ConsumeNext) -> None:
        """Run the rest of the chain, then log the message and its outcome."""
        msg = delivery.message
        if self.wanted is not None and msg.performative not in self.wanted:
            await call_next(delivery)
            return
        outcome = "handled"
        try:
            await call_next(delivery)
        except Exception as exc:
            outcome = f"failed ({type(exc).__name__})"
            raise
        finally:
            self.log.log(
                self.level,
                "audit: %s got %s %s from %s: %s",
                delivery.agent,
                msg.performative.value,
                msg.message_id,
                msg.sender_id,
                outcome,
            )


@hookimpl
def aclbus_middlewares(settings: Settings) -> Sequence[MiddlewareFactory]:
    """The audit middleware, its settings read once for the bus."""
    audit = AuditSettings()
    audit.wanted()  # an unknown performative fails when the bus starts, not per message

    def make(bus: Bus) -> Middleware:
        return Audit(audit)

    return [make]
