"""The measured program of ``make bench-instructions``: messages through aclbus' public API.

``python workload.py MODE --messages N --warmup W`` runs on the memory backend, a publishing
bus and a sibling bus for the receiving agent, as ``aclbus bench``'s memory column does:

- ``core``: ``bus.broadcast`` ``at_most_once`` to one subscribed agent;
- ``durable``: ``bus.send`` (``at_least_once``, the agent's inbox), acked by the receiver;
- ``request``: sequential ``bus.request`` to an agent that answers each with a reply.

First ``W`` messages warm up (caches, pools, the interpreter's specialised bytecode), then the
``N`` measured ones in phases. `mark` is called at each phase boundary: run under
``valgrind --tool=callgrind --dump-before=<MARKER>``, callgrind writes one dump per phase,
holding exactly the instructions spent between two marks (``run.py`` reads them). For
``core`` and ``durable`` the measured phases are ``publish`` (building and sending all N,
until the backend's publish returns) and ``consume`` (delivering them: decode, routing, the
handler, the ack); ``request`` has one phase, ``round-trip``.

Run directly, it is an ordinary program (the tests run it so): it checks that every message
arrived and prints one JSON object, ``{"mode", "messages", "warmup", "phases", "arrived",
"interleaved", "source"}``. ``interleaved`` counts deliveries that ran during the publish
phase (the split into publish and consume is exact only when it is 0); ``source`` is the
folder aclbus was imported from. It exits 1 with the reason on stderr when messages are
missing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import aclbus
from aclbus import ACLMessage, Bus, Performative, Settings
from aclbus.backend import DeliveryMode

MARKER = "_PyEval_GetSwitchInterval"
"""The C function `mark` enters: ``sys.getswitchinterval`` calls it, and nothing else does."""

MODES = ("core", "durable", "request")


def mark() -> None:
    """A phase boundary: callgrind dumps its counters when `MARKER` is entered."""
    sys.getswitchinterval()


def begin() -> None:
    """The first boundary, after a full collection.

    The collector's counters then start from zero in every run, so its collections fall at the
    same points of the measured messages whatever the start-up left (more modules, a longer
    ``sys.path``); without it two runs of the same code could differ by one collection.
    """
    gc.collect()
    mark()


class Arrivals:
    """Counts the messages the receiving agent handled; `wait` returns when ``expected`` came."""

    def __init__(self) -> None:
        self.count = 0
        self.expected = 0
        self._done = asyncio.Event()

    def arrived(self) -> None:
        """One more message handled."""
        self.count += 1
        if self.count >= self.expected:
            self._done.set()

    async def wait(self, expected: int, timeout: float) -> None:
        """Wait until ``expected`` messages in all have arrived, for ``timeout`` s at most."""
        self.expected = expected
        if self.count < expected:
            self._done.clear()
            await asyncio.wait_for(self._done.wait(), timeout)


async def run(
    mode: str, messages: int, warmup: int, size: int, timeout: float
) -> dict[str, object]:
    """Run ``mode``'s warm-up and measured phases; what happened, for the JSON line."""
    settings = Settings(backend="memory", broadcast_mode=DeliveryMode.AT_MOST_ONCE)
    bus = Bus(settings)
    await bus.start()
    peer = bus.sibling()
    await peer.start()
    try:
        sink = peer.agent("sink")
        arrivals = Arrivals()
        payload = "x" * size
        source = bus.agent("source")
        if mode == "request":

            @sink.on(Performative.REQUEST)
            async def echo(msg: ACLMessage) -> ACLMessage:
                return msg.reply(Performative.INFORM, payload=msg.payload)

            await sink.start()
            replies = 0

            async def ask(count: int) -> None:
                nonlocal replies
                for _ in range(count):
                    reply = await bus.request(
                        source.message(Performative.REQUEST, receiver_id="sink", payload=payload),
                        timeout=timeout,
                    )
                    if reply.performative is Performative.INFORM and reply.payload == payload:
                        replies += 1

            await ask(warmup)
            begin()
            await ask(messages)
            mark()
            return _report(mode, messages, warmup, ["round-trip"], replies - warmup, 0)

        @sink.on(Performative.INFORM)
        async def count(msg: ACLMessage) -> None:
            arrivals.arrived()

        await sink.start()
        publish = _publisher(bus, source.id, mode, payload)
        await publish(warmup)
        await arrivals.wait(warmup, timeout)
        begin()
        await publish(messages)
        interleaved = arrivals.count - warmup
        mark()
        with contextlib.suppress(TimeoutError):  # reported below: the count says what is missing
            await arrivals.wait(warmup + messages, timeout)
        mark()
        return _report(
            mode, messages, warmup, ["publish", "consume"], arrivals.count - warmup, interleaved
        )
    finally:
        await peer.stop()
        await bus.stop()


def _publisher(bus: Bus, sender: str, mode: str, payload: str) -> Callable[[int], Awaitable[None]]:
    agent = bus.agent(sender)

    async def broadcast(count: int) -> None:
        for _ in range(count):
            await bus.broadcast(
                agent.message(Performative.INFORM, message_type="bench.instr", payload=payload),
                mode=DeliveryMode.AT_MOST_ONCE,
            )

    async def send(count: int) -> None:
        for _ in range(count):
            await bus.send(agent.message(Performative.INFORM, receiver_id="sink", payload=payload))

    return broadcast if mode == "core" else send


def _report(
    mode: str, messages: int, warmup: int, phases: list[str], arrived: int, interleaved: int
) -> dict[str, object]:
    return {
        "mode": mode,
        "messages": messages,
        "warmup": warmup,
        "phases": phases,
        "arrived": arrived,
        "interleaved": interleaved,
        "source": str(Path(aclbus.__file__).parent),
    }


def main(argv: list[str] | None = None) -> int:
    """Run one mode; print its JSON line; 1 if a message is missing."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("--messages", type=int, default=2000, help="measured messages")
    parser.add_argument("--warmup", type=int, default=200, help="messages before measuring")
    parser.add_argument("--size", type=int, default=128, help="payload characters")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per wait")
    args = parser.parse_args(argv)
    if args.messages < 1 or args.warmup < 0:
        parser.error("--messages must be at least 1 and --warmup at least 0")
    report = asyncio.run(run(args.mode, args.messages, args.warmup, args.size, args.timeout))
    print(json.dumps(report))
    if report["arrived"] != args.messages:
        print(
            f"{args.mode}: {report['arrived']} of {args.messages} measured messages arrived",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
