"""The ``raw`` columns: nats-py used directly, the limit aclbus is measured against.

Core pub/sub and request-reply on plain connections; JetStream with ``publish_async`` (a
window of PubAcks in flight) and a push consumer acking each message explicitly. The
``raw-headers`` column does the same with the headers aclbus writes for the same message on
each one (a fresh ``ce-id`` each time), written and read by nats-py itself: what carrying an
envelope in headers costs the client library, before aclbus does anything with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import api

from aclbus import Bus, Performative, wire
from aclbus.bench import (
    Arrivals,
    BenchTimeout,
    Column,
    Params,
    Sample,
    publish_many,
    publish_paced,
    read_stamp,
    stamp,
)
from aclbus.bench.drivers import clock  # the clock of stamp/read_stamp (not exported)
from aclbus.plugin.bench_columns import (
    CORE_THROUGHPUT,
    DURABLE_THROUGHPUT,
    LATENCY_AT_RATE,
    REQUEST_LATENCY,
)
from aclbus_nats.bench.target import BenchTarget

__all__ = ["RawNatsColumn"]

_PROBE = b"aclbus-bench-probe"
"""A message the core step sends until it arrives, before the counted ones (see `_until_live`)."""


async def _until_live(
    column: str, pub: Client, sub: Client, subject: str, live: asyncio.Event, timeout: float
) -> None:
    """Publish `_PROBE` to ``subject`` until ``sub``'s subscription gets it.

    A flush after subscribing should make the subscription live before the first publish, yet
    about one core step in twenty lost its first few messages (a core message published
    before the server has the interest is gone). Seeing one arrive proves the path first.

    Raises:
        BenchTimeout: No probe came back within ``timeout`` seconds.
    """
    await sub.flush()
    deadline = asyncio.get_running_loop().time() + timeout
    while not live.is_set():
        await pub.publish(subject, _PROBE)
        await pub.flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(live.wait(), 0.1)
        if asyncio.get_running_loop().time() > deadline:
            raise BenchTimeout(column, CORE_THROUGHPUT, timeout, "no probe message came back")


class RawNatsColumn(Column):
    """nats-py with no layer on top: a publishing and a receiving connection.

    Args:
        target: Where to run.
        name: The column's name.
        envelope: The headers each message carries (``ce-id`` replaced by a fresh one per
            message), or None for none.
    """

    def __init__(
        self, target: BenchTarget, name: str = "raw", envelope: dict[str, str] | None = None
    ) -> None:
        super().__init__(name)
        self.target = target
        self._pub: Client | None = None
        self._sub: Client | None = None
        self._ids = itertools.count(1)
        self._envelope = envelope
        self._message_ids = itertools.count(1)

    @classmethod
    def for_bus(cls, bus: Bus) -> RawNatsColumn | None:
        """The column on ``bus``' server; None when the bus does not run on NATS."""
        target = BenchTarget.of(bus, "raw")
        return cls(target) if target is not None else None

    @classmethod
    def with_headers_for_bus(cls, bus: Bus) -> RawNatsColumn | None:
        """The ``raw-headers`` column on ``bus``' server; None when the bus is not on NATS."""
        target = BenchTarget.of(bus, "rawheaders")
        if target is None:
            return None
        sender = bus.agent("bench-source")
        message = sender.message(Performative.INFORM, receiver_id="bench-inbox", payload="")
        headers, _ = wire.encode(message, bus.codecs)
        return cls(target, "raw-headers", headers)

    def _headers(self) -> dict[str, str] | None:
        """The headers of the next message: the envelope with a fresh ``ce-id``, or None."""
        if self._envelope is None:
            return None
        return {**self._envelope, "ce-id": f"m-{next(self._message_ids)}"}

    async def open(self) -> None:
        """Connect twice and make the column's stream."""
        self._pub = await self.target.connect()
        self._sub = await self.target.connect()
        await self.target.create_stream(self._pub)

    async def close(self) -> None:
        """Remove the stream, close the connections."""
        if self._pub is not None:
            await self.target.delete_stream(self._pub)
        for nc in (self._pub, self._sub):
            if nc is not None:
                with contextlib.suppress(Exception):
                    await nc.close()
        self._pub = self._sub = None

    def _conns(self) -> tuple[Client, Client]:
        assert self._pub is not None, "open() the column first"
        assert self._sub is not None, "open() the column first"
        return self._pub, self._sub

    async def run(self, step: str, params: Params) -> Sample:
        """Run one step with nats-py (see `Column.run`)."""
        subject = f"{self.target.prefix}.s{next(self._ids)}"
        if step == CORE_THROUGHPUT:
            return await self._core(subject, params)
        if step in (DURABLE_THROUGHPUT, LATENCY_AT_RATE):
            return await self._durable(step, subject, params)
        return await self._request(step, subject, params)

    async def _core(self, subject: str, params: Params) -> Sample:
        pub, sub = self._conns()
        arrivals = Arrivals(params.messages, self.name, CORE_THROUGHPUT)
        live = asyncio.Event()

        async def count(msg: Msg) -> None:
            if msg.data == _PROBE:
                live.set()
                return
            arrivals.arrived()

        subscription = await sub.subscribe(subject, cb=count, pending_msgs_limit=-1)
        payload = stamp(params.size)
        try:
            await _until_live(self.name, pub, sub, subject, live, params.timeout)
            arrivals.start()
            for _ in range(params.messages):
                await pub.publish(subject, payload, headers=self._headers())
            await pub.flush()
            return await arrivals.wait(params.timeout)
        finally:
            await subscription.unsubscribe()

    async def _durable(self, step: str, subject: str, params: Params) -> Sample:
        pub, sub = self._conns()
        paced = step == LATENCY_AT_RATE
        total = max(1, int(params.rate * params.duration)) if paced else params.messages
        arrivals = Arrivals(total, self.name, step)

        async def consume(msg: Msg) -> None:
            await msg.ack()
            arrivals.arrived(read_stamp(msg.data) if paced else None)

        js_pub, js_sub = pub.jetstream(), sub.jetstream()
        subscription = await js_sub.subscribe(
            subject,
            cb=consume,
            manual_ack=True,
            stream=self.target.stream,
            config=api.ConsumerConfig(
                ack_policy=api.AckPolicy.EXPLICIT, deliver_policy=api.DeliverPolicy.NEW
            ),
            pending_msgs_limit=-1,
        )
        await sub.flush()
        payload = stamp(params.size)

        async def send(i: int) -> None:
            await js_pub.publish_async(subject, payload, headers=self._headers())

        async def send_due(i: int, due: float) -> None:
            await js_pub.publish_async(subject, stamp(params.size, due), headers=self._headers())

        try:
            arrivals.start()
            if paced:
                await publish_paced(send_due, params.rate, params.duration, params.in_flight)
            else:
                # publish_async needs no window of ours: it bounds its own pending PubAcks.
                await publish_many(send, params.messages, 1)
            await js_pub.publish_async_completed()
            return await arrivals.wait(params.timeout)
        finally:
            await subscription.unsubscribe()

    async def _request(self, step: str, subject: str, params: Params) -> Sample:
        pub, sub = self._conns()
        arrivals = Arrivals(params.messages, self.name, step)

        async def echo(msg: Msg) -> None:
            await sub.publish(msg.reply, msg.data, headers=self._headers())

        subscription = await sub.subscribe(subject, cb=echo)
        await sub.flush()
        payload = stamp(params.size)
        sequential = step == REQUEST_LATENCY

        async def ask(i: int) -> None:
            sent = clock()
            await pub.request(subject, payload, timeout=params.timeout, headers=self._headers())
            arrivals.arrived(sent if sequential else None)

        try:
            arrivals.start()
            await publish_many(ask, params.messages, 1 if sequential else params.in_flight)
            return await arrivals.wait(params.timeout)
        finally:
            await subscription.unsubscribe()
