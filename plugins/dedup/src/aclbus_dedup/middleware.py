"""The two middlewares of the dedup plugin: `PublishRetry` and `ConsumeOnce`.

Each overrides one method only, so a bus pays for the side it enables and nothing else: the
publish chain never sees `ConsumeOnce`, the consume chain never sees `PublishRetry`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from aclbus.backend import DeliveryMode, KVSpec, PublishAck
from aclbus.errors import BackendClosed, ConfigurationError, PublishTimeout
from aclbus.middleware import ConsumeNext, Delivery, Middleware, Outgoing, PublishNext
from aclbus_dedup.claims import Claims, Outcome
from aclbus_dedup.received import ClaimedReceived
from aclbus_dedup.settings import DedupSettings
from aclbus_dedup.stats import DedupStats

if TYPE_CHECKING:
    from aclbus.bus import Bus

__all__ = ["ConsumeOnce", "PublishRetry", "wall_clock"]

log = logging.getLogger("aclbus.dedup")

_ALO = DeliveryMode.AT_LEAST_ONCE


def wall_clock(backend: object) -> Callable[[], float]:
    """Wall-clock seconds as ``backend`` sees them.

    The backend's own clock when it has one (the memory engine's, so that a test's
    `ManualClock` also moves claim deadlines, on the same time base as the bucket's TTL), else
    `time.time`.
    """
    wall = getattr(getattr(backend, "clock", None), "wall", None)
    if callable(wall):
        return lambda: float(wall().timestamp())
    return time.time


class PublishRetry(Middleware):
    """Sends an ambiguous persistent publish again, with the same message id.

    A `PublishTimeout` (no PubAck in time), or a `BackendClosed` while the bus is still
    running (the connection is down, or its reconnect buffer is full), leaves the publish
    ambiguous: it may be stored or not. Within the stream's duplicate window the broker stores a
    message id once, so sending the very same message again is safe; its PubAck then says
    ``duplicate=True`` when the first attempt had been stored after all. The NATS backend
    already resends once by itself when the connection comes back within the publish timeout;
    this covers what is left: a timeout (a leader election longer than the publish timeout),
    or a connection that stays down a little longer.

    Args:
        bus: The bus.
        settings: The plugin's settings.
    """

    def __init__(self, bus: Bus, settings: DedupSettings) -> None:
        self.bus = bus
        self.retries = settings.publish_retries
        self.backoff = settings.publish_backoff
        self.backoff_max = settings.publish_backoff_max
        self.stats = DedupStats()

    async def publish(self, out: Outgoing, call_next: PublishNext) -> PublishAck:
        """Publish, and resend with the same id while the outcome is ambiguous."""
        if out.mode is not _ALO:
            return await call_next(out)
        retry = 0
        while True:
            try:
                ack = await call_next(out)
            except (PublishTimeout, BackendClosed) as exc:
                if retry >= self.retries or not self.bus.started:
                    raise
                retry += 1
                self.stats.publish_retries += 1
                pause = min(self.backoff * 2 ** (retry - 1), self.backoff_max)
                log.warning(
                    "dedup: the publish of message %s to %s is unconfirmed (%s); sending it "
                    "again with the same id in %.2f s (retry %d of %d)",
                    out.message.message_id,
                    out.subject,
                    type(exc).__name__,
                    pause,
                    retry,
                    self.retries,
                )
                await asyncio.sleep(pause)
                continue
            if ack.duplicate:
                self.stats.publish_duplicates += 1
            return ack


class ConsumeOnce(Middleware):
    """Runs a handler once per agent and message id, across redeliveries and duplicates.

    Each persistent delivery first claims its message in the KV bucket (see
    `aclbus_dedup.claims`); ``at_most_once`` deliveries (requests, fire-and-forget broadcasts)
    pass straight through, since the broker never redelivers them.

    Args:
        bus: The bus.
        settings: The plugin's settings.

    Raises:
        ConfigurationError: The window is not longer than the claim timeout (a claim would
            expire from the bucket while it still holds).
    """

    def __init__(self, bus: Bus, settings: DedupSettings) -> None:
        self.bus = bus
        self.window = settings.window_for(bus.settings)
        self.claim_timeout = settings.claim_timeout_for(bus.settings)
        self.bucket = settings.bucket_for(bus.settings)
        self.error_delay = settings.error_delay
        if self.window <= self.claim_timeout:
            raise ConfigurationError(
                f"dedup window ({self.window:g} s) must be longer than the claim timeout "
                f"({self.claim_timeout:g} s): raise ACLBUS_DEDUP__WINDOW (or "
                "ACLBUS_STREAMS__DUPLICATE_WINDOW) or lower ACLBUS_DEDUP__CLAIM_TIMEOUT "
                "(default: ACLBUS_ACK_WAIT)"
            )
        self.stats = DedupStats()
        self.now = wall_clock(bus.backend)
        self.claims: Claims | None = None
        self._opening = asyncio.Lock()

    async def open(self) -> Claims:
        """Provision the bucket (TTL = window) once; the claims of this bus."""
        async with self._opening:
            if self.claims is None:
                backend = self.bus.backend
                limits = self.bus.settings.streams
                await backend.provision(
                    KVSpec(
                        self.bucket,
                        ttl=self.window,
                        # as durable and as available as the streams whose messages it guards
                        replicas=limits.replicas,
                        storage="memory" if limits.storage == "memory" else "file",
                    )
                )
                self.claims = Claims(
                    await backend.kv(self.bucket),
                    timeout=self.claim_timeout,
                    now=self.now,
                    stats=self.stats,
                )
            return self.claims

    async def consume(self, delivery: Delivery, call_next: ConsumeNext) -> None:
        """Claim the message, then run the handler, skip it, or hand it back for later."""
        received = delivery.received
        if received.mode is not _ALO:
            await call_next(delivery)
            return
        try:
            claims = self.claims or await self.open()
            claim = await claims.acquire(delivery.agent, delivery.message.message_id)
        except Exception as exc:
            self.stats.kv_errors += 1
            log.warning(
                "dedup: agent %s: cannot check message %s for duplicates (%s: %s); it comes "
                "back in %g s",
                delivery.agent,
                delivery.message.message_id,
                type(exc).__name__,
                exc,
                self.error_delay,
            )
            await delivery.nack(self.error_delay)
            return
        if claim.outcome is Outcome.DONE:
            self.stats.skipped += 1
            await delivery.ack()
            return
        if claim.outcome is Outcome.BUSY:
            self.stats.busy += 1
            await delivery.nack(claim.wait)
            return
        delivery.received = ClaimedReceived(received, claim)
        try:
            await call_next(delivery)
        except BaseException:
            await claim.release()
            raise
