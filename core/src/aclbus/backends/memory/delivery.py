"""`StreamReceived`: an ``at_least_once`` delivery, which tells its consumer how it was settled."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from aclbus.backend import DeliveryMode, Received

__all__ = ["Settler", "StreamReceived"]

_ALO = DeliveryMode.AT_LEAST_ONCE


class Settler(Protocol):
    """What a delivery tells once its handler settles it: its consumer (`Consumer` is one)."""

    def ack(self, delivery: Received) -> None:
        """The message of ``delivery`` is done."""

    def nack(self, delivery: Received, delay: float | None) -> None:
        """Deliver the message of ``delivery`` again, after ``delay`` seconds if given."""

    def term(self, delivery: Received, reason: str | None) -> None:
        """Never deliver the message of ``delivery`` again."""

    def progress(self, delivery: Received) -> None:
        """Restart the ack timer of ``delivery``'s message."""


class StreamReceived(Received):
    """An ``at_least_once`` delivery: settling it tells its consumer.

    Args:
        subject: The subject the message was published to.
        headers: Its headers.
        body: Its body.
        consumer: The consumer that made the delivery, told how it is settled.
        attempt: The delivery count, from 1.
        sequence: Its sequence in the stream.
        stream: The stream's name.
    """

    __slots__ = ("_consumer",)

    def __init__(
        self,
        subject: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        consumer: Settler,
        attempt: int = 1,
        sequence: int | None = None,
        stream: str | None = None,
    ) -> None:
        super().__init__(
            subject, headers, body, attempt=attempt, sequence=sequence, mode=_ALO, stream=stream
        )
        self._consumer = consumer

    def duplicate(self) -> StreamReceived:
        """The same delivery once more (same attempt and sequence), as a duplicate arrives."""
        return StreamReceived(
            self.subject,
            self.headers,
            self.body,
            consumer=self._consumer,
            attempt=self.attempt,
            sequence=self.sequence,
            stream=self.stream,
        )

    async def _ack(self) -> None:
        self._consumer.ack(self)

    async def _nack(self, delay: float | None) -> None:
        self._consumer.nack(self, delay)

    async def _term(self, reason: str | None) -> None:
        self._consumer.term(self, reason)

    async def _in_progress(self) -> None:
        self._consumer.progress(self)
