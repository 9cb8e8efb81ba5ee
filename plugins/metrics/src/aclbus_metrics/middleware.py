"""`MetricsMiddleware`: counts and times what goes out, comes in and is asked, per bus."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from aclbus.acl import ACLMessage
from aclbus.errors import NoResponders, RequestTimeout
from aclbus.middleware import (
    ConsumeNext,
    Delivery,
    Middleware,
    Outgoing,
    PublishNext,
    RequestNext,
)
from aclbus.redaction import redact
from aclbus.specs import PublishAck
from aclbus_metrics.bus_collector import BusCollector
from aclbus_metrics.instruments import Instruments

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from aclbus_metrics.server import MetricsServer

__all__ = ["MetricsMiddleware"]

log = logging.getLogger("aclbus.metrics")

_now = time.time
_clock = time.perf_counter


class MetricsMiddleware(Middleware):
    """The metrics plugin's middleware on one bus: it holds the bus' registry.

    Made outermost (the hook is ``tryfirst``), so that it sees every delivery as the other
    plugins leave it: a retry plugin's nack is counted as ``nacked``, an exception that the
    bus will dead-letter as ``failed``.

    Args:
        registry: The bus' registry (its own, or the global one by setting).
        instruments: The counters and histograms, registered in ``registry``.
        shared: ``registry`` is the process' global one: `release` unregisters from it.
        collector: The bus' `BusCollector` in ``registry``, unregistered with the rest.

    Attributes:
        registry: The registry to expose (`aclbus_metrics.exposition`).
        instruments: What this middleware feeds.
        server: The HTTP server serving ``registry``, once the bus has started one.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        instruments: Instruments,
        *,
        shared: bool = False,
        collector: BusCollector | None = None,
    ) -> None:
        self.registry = registry
        self.instruments = instruments
        self.server: MetricsServer | None = None
        self._shared = shared
        self._collector = collector
        self._poller: asyncio.Task[None] | None = None

    async def poll(self) -> None:
        """Read the backend's consumer states now (see `BusCollector.poll`)."""
        if self._collector is not None:
            await self._collector.poll()

    def start_polling(self, interval: float) -> None:
        """Poll the consumer states every ``interval`` seconds until `stop_polling`."""
        if self._poller is None and self._collector is not None:
            self._poller = asyncio.get_running_loop().create_task(self._polling(interval))

    def stop_polling(self) -> None:
        """Stop the polling task (the bus stops). Idempotent."""
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None

    async def _polling(self, interval: float) -> None:
        while True:
            try:
                await self.poll()
            except Exception as exc:  # the broker out of reach: the gauges keep the last poll
                log.warning(
                    "metrics: could not read the consumer states: %s: %s",
                    type(exc).__name__,
                    redact(str(exc)),
                )
            await asyncio.sleep(interval)

    def release(self) -> None:
        """Take this bus' metrics out of a shared (global) registry, when the bus stops.

        A registry of the bus' own is left as it is: it goes with the bus, and a last scrape
        after the stop still sees the final counts.
        """
        if not self._shared:
            return
        self._shared = False
        self.registry.unregister(self.instruments)
        if self._collector is not None:
            self.registry.unregister(self._collector)

    async def publish(self, out: Outgoing, call_next: PublishNext) -> PublishAck:
        """Count a publish once it is through; count its error class if it raised."""
        msg = out.message
        try:
            ack = await call_next(out)
        except Exception as exc:
            errors = self.instruments.publish_errors
            key = (msg.performative.value, msg.message_type, type(exc).__name__)
            errors[key] = errors.get(key, 0) + 1
            raise
        self.instruments.sent_for(msg.performative.value, msg.message_type).sent += 1
        return ack

    async def consume(self, delivery: Delivery, call_next: ConsumeNext) -> None:
        """Count a delivery, its latency from the envelope's timestamp, its handling and end."""
        msg = delivery.message
        cells = self.instruments.consume_for(
            msg.performative.value, msg.message_type, delivery.agent
        )
        cells.received += 1
        if delivery.received.attempt > 1:
            cells.retried += 1
        cells.latency.observe(max(0.0, _now() - msg.timestamp.timestamp()))
        start = _clock()
        try:
            await call_next(delivery)
        except BaseException:
            cells.duration.observe(_clock() - start)
            # The bus gives up what is left unsettled (dead letter, then term); a retry
            # plugin inside this middleware has nacked it already.
            settled = delivery.received.settled
            if settled == "nack":
                cells.nacked += 1
            elif settled == "term":
                cells.terminated += 1
            else:
                cells.failed += 1
            raise
        cells.duration.observe(_clock() - start)
        settled = delivery.received.settled
        if settled == "ack":
            cells.acked += 1
        elif settled == "nack":
            cells.nacked += 1
        elif settled == "term":
            cells.terminated += 1
        else:
            cells.unsettled += 1

    async def request(self, out: Outgoing, call_next: RequestNext) -> ACLMessage:
        """Count a request by outcome and time it to its reply."""
        msg = out.message
        cells = self.instruments.request_for(msg.performative.value, msg.message_type)
        start = _clock()
        try:
            reply = await call_next(out)
        except RequestTimeout:
            cells.timeout += 1
            raise
        except NoResponders:
            cells.no_responders += 1
            raise
        except Exception:
            cells.error += 1
            raise
        finally:
            cells.duration.observe(_clock() - start)
        cells.replied += 1
        return reply
