"""The aclbus column: the public `Bus` API, on whatever backend the bus runs.

A publishing bus and a sibling bus (another connection, as another process would have) run
the agents that receive. The same class measures the memory backend (the ``memory`` column).
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable

from aclbus.acl import ACLMessage, Performative
from aclbus.backend import DeliveryMode
from aclbus.bench.drivers import Arrivals, clock, publish_many, publish_paced, read_stamp, stamp
from aclbus.bus import Bus
from aclbus.plugin.bench_columns import (
    CORE_THROUGHPUT,
    DURABLE_THROUGHPUT,
    LATENCY_AT_RATE,
    REQUEST_LATENCY,
    REQUEST_THROUGHPUT,
    Column,
    Params,
    Sample,
)

__all__ = ["BusColumn"]


class BusColumn(Column):
    """aclbus measured through its public API.

    Args:
        name: The column's name (``aclbus``, or ``memory`` for the memory backend's figure).
        bus: The publishing bus, started; a sibling is made for the receiving agents.
    """

    def __init__(self, name: str, bus: Bus) -> None:
        super().__init__(name)
        self.bus = bus
        self._peer: Bus | None = None
        self._ids = itertools.count(1)

    async def open(self) -> None:
        """Start the sibling bus that runs the receiving agents."""
        self._peer = self.bus.sibling()
        await self._peer.start()

    async def close(self) -> None:
        """Stop the sibling bus."""
        if self._peer is not None:
            await self._peer.stop()
            self._peer = None

    @property
    def peer(self) -> Bus:
        """The receiving bus."""
        if self._peer is None:
            self._peer = self.bus.sibling()
        return self._peer

    async def run(self, step: str, params: Params) -> Sample:
        """Run one step through the `Bus` API (see `Column.run`)."""
        runs: dict[str, Callable[[Params], Awaitable[Sample]]] = {
            CORE_THROUGHPUT: self._core_throughput,
            DURABLE_THROUGHPUT: self._durable_throughput,
            REQUEST_LATENCY: self._request_latency,
            REQUEST_THROUGHPUT: self._request_throughput,
            LATENCY_AT_RATE: self._latency_at_rate,
        }
        return await runs[step](params)

    def _name(self, what: str) -> str:
        # A fresh agent per run: its durable inbox starts empty and nothing is left over.
        return f"bench-{what}-{next(self._ids)}"

    async def _core_throughput(self, params: Params) -> Sample:
        sink_id = self._name("sink")
        arrivals = Arrivals(params.messages, self.name, CORE_THROUGHPUT)
        sink = self.peer.agent(sink_id)

        @sink.on(Performative.INFORM, message_type=f"bench.{sink_id}")
        async def count(msg: ACLMessage) -> None:
            arrivals.arrived()

        await sink.start()
        sender = self.bus.agent("bench-source")
        payload = stamp(params.size).decode()
        try:
            arrivals.start()
            for _ in range(params.messages):
                await self.bus.broadcast(
                    sender.message(
                        Performative.INFORM, message_type=f"bench.{sink_id}", payload=payload
                    ),
                    mode=DeliveryMode.AT_MOST_ONCE,
                )
            return await arrivals.wait(params.timeout)
        finally:
            await self.peer.remove_agent(sink_id)

    async def _durable_throughput(self, params: Params) -> Sample:
        sink_id = self._name("inbox")
        arrivals = Arrivals(params.messages, self.name, DURABLE_THROUGHPUT)
        sink = self.peer.agent(sink_id)

        @sink.on(Performative.INFORM)
        async def count(msg: ACLMessage) -> None:
            arrivals.arrived()

        await sink.start()
        sender = self.bus.agent("bench-source")
        payload = stamp(params.size).decode()

        async def send(i: int) -> None:
            await self.bus.send(
                sender.message(Performative.INFORM, receiver_id=sink_id, payload=payload)
            )

        try:
            arrivals.start()
            await publish_many(send, params.messages, params.in_flight)
            return await arrivals.wait(params.timeout)
        finally:
            await self.peer.remove_agent(sink_id)

    async def _echo(self) -> str:
        echo_id = self._name("echo")
        echo = self.peer.agent(echo_id)

        @echo.on(Performative.REQUEST)
        async def answer(msg: ACLMessage) -> ACLMessage:
            return msg.reply(Performative.INFORM, payload=msg.payload)

        await echo.start()
        return echo_id

    async def _request_latency(self, params: Params) -> Sample:
        echo_id = await self._echo()
        sender = self.bus.agent("bench-client")
        arrivals = Arrivals(params.messages, self.name, REQUEST_LATENCY)
        payload = stamp(params.size).decode()
        deadline = clock() + params.timeout
        try:
            arrivals.start()
            for _ in range(params.messages):
                if clock() > deadline:
                    break  # the wait below names what was missing
                sent = clock()
                await self.bus.request(
                    sender.message(Performative.REQUEST, receiver_id=echo_id, payload=payload),
                    timeout=params.timeout,
                )
                arrivals.arrived(sent)
            return await arrivals.wait(0)
        finally:
            await self.peer.remove_agent(echo_id)

    async def _request_throughput(self, params: Params) -> Sample:
        echo_id = await self._echo()
        sender = self.bus.agent("bench-client")
        arrivals = Arrivals(params.messages, self.name, REQUEST_THROUGHPUT)
        payload = stamp(params.size).decode()

        async def ask(i: int) -> None:
            await self.bus.request(
                sender.message(Performative.REQUEST, receiver_id=echo_id, payload=payload),
                timeout=params.timeout,
            )
            arrivals.arrived()

        try:
            arrivals.start()
            await publish_many(ask, params.messages, params.in_flight)
            return await arrivals.wait(params.timeout)
        finally:
            await self.peer.remove_agent(echo_id)

    async def _latency_at_rate(self, params: Params) -> Sample:
        sink_id = self._name("inbox")
        total = max(1, int(params.rate * params.duration))
        arrivals = Arrivals(total, self.name, LATENCY_AT_RATE)
        sink = self.peer.agent(sink_id)

        @sink.on(Performative.INFORM)
        async def record(msg: ACLMessage) -> None:
            arrivals.arrived(read_stamp(msg.payload))

        await sink.start()
        sender = self.bus.agent("bench-source")

        async def send(i: int, due: float) -> None:
            await self.bus.send(
                sender.message(
                    Performative.INFORM,
                    receiver_id=sink_id,
                    payload=stamp(params.size, due).decode(),
                )
            )

        try:
            arrivals.start()
            await publish_paced(send, params.rate, params.duration, params.in_flight)
            return await arrivals.wait(params.timeout)
        finally:
            await self.peer.remove_agent(sink_id)
