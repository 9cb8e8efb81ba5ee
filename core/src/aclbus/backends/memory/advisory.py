"""The JetStream consumer advisories the engine publishes, with nats-server's subjects and bodies.

An advisory goes out ``at_most_once`` and only when someone listens: its JSON body is made
only then (see `MemoryServer.advise`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aclbus.backends.memory.clock import Clock

__all__ = ["Advise", "Advisories"]

Advise = Callable[[str, Callable[[], bytes]], None]
"""``advise(subject, make_body)``: publish a JetStream-style advisory if anyone listens."""


class Advisories:
    """The advisories of one consumer.

    Args:
        advise: How to publish an advisory.
        clock: The engine's clock (for the ``timestamp``).
        stream: The consumer's stream.
        consumer: The consumer's name.
    """

    __slots__ = ("_advise", "_clock", "_consumer", "_stream")

    def __init__(self, advise: Advise, clock: Clock, stream: str, consumer: str) -> None:
        self._advise = advise
        self._clock = clock
        self._stream = stream
        self._consumer = consumer

    def terminated(self, seq: int, deliveries: int, reason: str) -> None:
        """``MSG_TERMINATED``: message ``seq`` will not be delivered again, for ``reason``."""
        stream, name, clock = self._stream, self._consumer, self._clock
        self._advise(
            f"$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.{stream}.{name}",
            lambda: _body("terminated", stream, name, seq, deliveries, clock, reason=reason),
        )

    def max_deliveries(self, seq: int, deliveries: int) -> None:
        """``MAX_DELIVERIES``: message ``seq`` was given up after ``deliveries`` deliveries."""
        stream, name, clock = self._stream, self._consumer, self._clock
        self._advise(
            f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{name}",
            lambda: _body("max_deliver", stream, name, seq, deliveries, clock),
        )


def _body(
    kind: str,
    stream: str,
    consumer: str,
    seq: int,
    deliveries: int,
    clock: Clock,
    **extra: object,
) -> bytes:
    """The JSON body of a JetStream consumer advisory (``io.nats.jetstream.advisory.v1.*``)."""
    body: dict[str, object] = {
        "type": f"io.nats.jetstream.advisory.v1.{kind}",
        "timestamp": clock.wall().isoformat().replace("+00:00", "Z"),
        "stream": stream,
        "consumer": consumer,
        "stream_seq": seq,
        "deliveries": deliveries,
    }
    body.update(extra)
    return json.dumps(body).encode()
