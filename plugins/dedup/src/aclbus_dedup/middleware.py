"""The two middlewares of the dedup plugin: `PublishRetry` and `ConsumeOnce`.

Each overrides one method only, so a bus pays for the side it enables and nothing else: the
publish chain never sees `ConsumeOnce`, the consume chain never sees `PublishRetry`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from aclbus.backend import Backend, DeliveryMode, KVSpec, PublishAck
from aclbus.dlq import redact
from aclbus.errors import BackendClosed, ConfigurationError, PublishTimeout
from aclbus.middleware import ConsumeNext, Delivery, Middleware, Outgoing, PublishNext
from aclbus_dedup.claims import Claim, Claims, Outcome, claim_key, new_token
from aclbus_dedup.outage import KeepAlive, Outage
from aclbus_dedup.received import ClaimedReceived
from aclbus_dedup.settings import DedupSettings
from aclbus_dedup.stats import DedupStats
from aclbus_dedup.unfinished import Unfinished

if TYPE_CHECKING:
    from aclbus import Bus

__all__ = ["ConsumeOnce", "PublishRetry", "wall_clock"]

log = logging.getLogger("aclbus.dedup")

_ALO = DeliveryMode.AT_LEAST_ONCE


def wall_clock(backend: Backend) -> Callable[[], float]:
    """Wall-clock seconds of ``backend``'s clock (`Backend.clock`).

    Claim deadlines are on the same time base as the bucket's TTL and `KVEntry.created`: on
    the memory engine under a test's `ManualClock`, they move only when the test advances it.
    """
    wall = backend.clock.wall
    return lambda: wall().timestamp()


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

    While the bucket is out of reach (a server restart, a KV leader election, a partition), a
    delivery is held rather than nacked: kept from redelivery with ``in_progress()`` every
    third of ``ack_wait``, so that JetStream counts no further delivery attempt, while its
    claim is retried with a doubling pause for up to ``kv_wait`` seconds. Only then is it
    nacked with ``error_delay``. The broker meanwhile hands this consumer no more than it has
    handler slots for (on NATS, the deliveries already pushed to the client wait in its
    queue with their ack timers running).

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
        self.kv_wait = settings.kv_wait
        self.done_wait = settings.done_wait
        # Like the retry plugin's "auto" heartbeat: three chances per ack_wait.
        self.keep_alive = bus.settings.ack_wait / 3
        if self.window <= self.claim_timeout:
            raise ConfigurationError(
                f"dedup window ({self.window:g} s) must be longer than the claim timeout "
                f"({self.claim_timeout:g} s): raise ACLBUS_DEDUP__WINDOW (or "
                "ACLBUS_STREAMS__DUPLICATE_WINDOW) or lower ACLBUS_DEDUP__CLAIM_TIMEOUT "
                "(default: ACLBUS_ACK_WAIT)"
            )
        self.stats = DedupStats()
        self.now = wall_clock(bus.backend)
        self.outage = Outage(
            self.bucket,
            now=self.now,
            sleep=bus.backend.clock.sleep,
            first=settings.kv_backoff,
            cap=settings.kv_backoff_max,
        )
        self.unfinished = Unfinished(self.stats, self.outage, window=self.window)
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
                    outage=self.outage,
                    done_wait=self.done_wait,
                    keep_alive=self.keep_alive,
                    unfinished=self.unfinished,
                )
            return self.claims

    async def close(self) -> None:
        """The bus is stopping: end the waits for the bucket, stop the background writes."""
        self.outage.stop()
        await self.unfinished.close()

    async def consume(self, delivery: Delivery, call_next: ConsumeNext) -> None:
        """Claim the message, then run the handler, skip it, or hand it back for later."""
        received = delivery.received
        if received.mode is not _ALO:
            await call_next(delivery)
            return
        message_id = delivery.message.message_id
        if self.unfinished and self.unfinished.holds(claim_key(delivery.agent, message_id)):
            self.stats.skipped += 1  # it ran here; its done record is still on its way
            await delivery.ack()
            return
        token = new_token()
        try:
            claims = self.claims or await self.open()
            claim = await claims.acquire(delivery.agent, message_id, token=token)
        except Exception as exc:
            waited = await self._wait_for_bucket(delivery, token, exc)
            if waited is None:
                return
            claim = waited
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

    async def _wait_for_bucket(
        self, delivery: Delivery, token: str, error: Exception
    ) -> Claim | None:
        """Hold ``delivery`` while its claim is retried; None once it was nacked instead."""
        outage = self.outage
        self.stats.kv_errors += 1
        self.stats.held += 1
        outage.failed(error)
        give_up = self.now() + self.kv_wait
        async with KeepAlive(delivery.received, self.keep_alive, outage.sleep):
            for pause in outage.pauses():
                left = give_up - self.now()
                if left <= 0 or not await outage.pause(min(pause, left)):
                    break
                try:
                    claims = self.claims or await self.open()
                    return await claims.acquire(
                        delivery.agent, delivery.message.message_id, token=token
                    )
                except Exception as exc:
                    self.stats.kv_errors += 1
                    outage.failed(exc)
                    error = exc
        log.warning(
            "dedup: agent %s: cannot check message %s for duplicates (%s: %s); it comes back "
            "in %g s",
            delivery.agent,
            delivery.message.message_id,
            type(error).__name__,
            redact(str(error)),
            self.error_delay,
        )
        await delivery.nack(self.error_delay)
        return None
