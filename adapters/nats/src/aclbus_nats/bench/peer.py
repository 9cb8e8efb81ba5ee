"""The ``faststream`` column: FastStream's `NatsBroker` used directly, the peer.

Handlers are plain FastStream subscribers (``async def handle(body: bytes)``), with
FastStream's own logging off (``logger=None``) so the peer is measured at its best. Publishes
go through ``broker.publish`` (JetStream with ``stream=``, awaiting each PubAck, ``in_flight``
at once) and requests through ``broker.request``.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Awaitable, Callable

from faststream.nats import DeliverPolicy, JStream, NatsBroker
from nats.aio.client import Client

from aclbus import Bus
from aclbus.bench import (
    Arrivals,
    Column,
    Params,
    Sample,
    publish_many,
    publish_paced,
    read_stamp,
    stamp,
)
from aclbus.bench.drivers import clock  # the clock of stamp/read_stamp (not exported)
from aclbus.plugin.bench_columns import CORE_THROUGHPUT, LATENCY_AT_RATE, REQUEST_LATENCY
from aclbus_nats.bench.target import BenchTarget

__all__ = ["FastStreamColumn"]


class FastStreamColumn(Column):
    """FastStream 0.7's NATS broker: one broker publishes, a fresh one per step subscribes.

    Args:
        target: Where to run.
    """

    def __init__(self, target: BenchTarget) -> None:
        super().__init__("faststream")
        self.target = target
        self._admin: Client | None = None
        self._pub: NatsBroker | None = None
        self._ids = itertools.count(1)

    @classmethod
    def for_bus(cls, bus: Bus) -> FastStreamColumn | None:
        """The column on ``bus``' server; None when the bus does not run on NATS."""
        target = BenchTarget.of(bus, "fs")
        return cls(target) if target is not None else None

    async def open(self) -> None:
        """Make the column's stream and connect the publishing broker."""
        self._admin = await self.target.connect()
        await self.target.create_stream(self._admin)
        self._pub = NatsBroker(self.target.servers, logger=None)
        await self._pub.connect()

    async def close(self) -> None:
        """Stop the broker, remove the stream."""
        if self._pub is not None:
            with contextlib.suppress(Exception):
                await self._pub.stop()
            self._pub = None
        if self._admin is not None:
            await self.target.delete_stream(self._admin)
            with contextlib.suppress(Exception):
                await self._admin.close()
            self._admin = None

    async def run(self, step: str, params: Params) -> Sample:
        """Run one step with FastStream (see `Column.run`)."""
        assert self._pub is not None, "open() the column first"
        pub = self._pub
        subject = f"{self.target.prefix}.s{next(self._ids)}"
        sub = NatsBroker(self.target.servers, logger=None)
        durable = step not in (CORE_THROUGHPUT, REQUEST_LATENCY) and not step.startswith("request")
        paced = step == LATENCY_AT_RATE
        total = max(1, int(params.rate * params.duration)) if paced else params.messages
        arrivals = Arrivals(total, self.name, step)
        stream = JStream(self.target.stream, declare=False) if durable else None

        if step.startswith("request"):

            @sub.subscriber(subject)
            async def echo(body: bytes) -> bytes:
                return body

        elif paced:

            @sub.subscriber(subject, stream=stream, deliver_policy=DeliverPolicy.NEW)
            async def record(body: bytes) -> None:
                arrivals.arrived(read_stamp(body))

        elif durable:

            @sub.subscriber(subject, stream=stream, deliver_policy=DeliverPolicy.NEW)
            async def count(body: bytes) -> None:
                arrivals.arrived()

        else:

            @sub.subscriber(subject)
            async def count_core(body: bytes) -> None:
                arrivals.arrived()

        await sub.start()
        # FastStream returns before the server has the SUB: a core publish on the other
        # connection could come first and be lost. One round trip puts the SUB ahead of it.
        connection = getattr(sub, "_connection", None)
        if connection is not None:
            await connection.flush()
        try:
            return await self._drive(step, subject, params, pub, arrivals, durable)
        finally:
            await sub.stop()

    async def _drive(
        self,
        step: str,
        subject: str,
        params: Params,
        pub: NatsBroker,
        arrivals: Arrivals,
        durable: bool,
    ) -> Sample:
        payload = stamp(params.size)
        stream = self.target.stream if durable else None
        arrivals.start()
        if step == CORE_THROUGHPUT:
            for _ in range(params.messages):
                await pub.publish(payload, subject)
        elif step == LATENCY_AT_RATE:

            async def send_due(i: int, due: float) -> None:
                await pub.publish(stamp(params.size, due), subject, stream=stream)

            await publish_paced(send_due, params.rate, params.duration, params.in_flight)
        elif step.startswith("request"):
            sequential = step == REQUEST_LATENCY

            async def ask(i: int) -> None:
                sent = clock()
                await pub.request(payload, subject, timeout=params.timeout)
                arrivals.arrived(sent if sequential else None)

            await publish_many(ask, params.messages, 1 if sequential else params.in_flight)
        else:
            send: Callable[[int], Awaitable[object]] = lambda i: pub.publish(  # noqa: E731
                payload, subject, stream=stream
            )
            await publish_many(send, params.messages, params.in_flight)
        return await arrivals.wait(params.timeout)
