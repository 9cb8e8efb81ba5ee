"""One delivery of a message to a subscription: `Received`, settled once."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Literal

from aclbus.specs import DeliveryMode

__all__ = ["Received", "Settlement"]

Settlement = Literal["ack", "nack", "term"]
"""How a delivery was settled (`Received.settled`)."""


class Received(ABC):
    """One delivery of a message to a subscription, with the means to settle it.

    Backends subclass it and implement ``_ack``, ``_nack``, ``_term`` and ``_in_progress``;
    the base makes settlement happen once (a second ``ack``/``nack``/``term`` is ignored) and
    remembers how it was settled.

    Attributes:
        subject: The subject it was published to.
        headers: Its headers as sent.
        body: Its body as sent.
        reply: Where the sender of a request waits for the reply, or None.
        attempt: The delivery count, from 1.
        sequence: Its sequence in the stream (None for ``at_most_once``).
        mode: The delivery mode of the subscription it came through.
        stream: The stream it was stored in (None for ``at_most_once``).
    """

    __slots__ = (
        "_settled",
        "attempt",
        "body",
        "headers",
        "mode",
        "reply",
        "sequence",
        "stream",
        "subject",
    )

    def __init__(
        self,
        subject: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        reply: str | None = None,
        attempt: int = 1,
        sequence: int | None = None,
        mode: DeliveryMode = DeliveryMode.AT_LEAST_ONCE,
        stream: str | None = None,
    ) -> None:
        self.subject = subject
        self.stream = stream
        self.headers = headers
        self.body = body
        self.reply = reply
        self.attempt = attempt
        self.sequence = sequence
        self.mode = mode
        self._settled: Settlement | None = None

    @property
    def settled(self) -> Settlement | None:
        """How this delivery was settled (``"ack"``, ``"nack"``, ``"term"``), or None yet."""
        return self._settled

    async def ack(self) -> None:
        """Acknowledge: the message is done and will not be delivered again."""
        if self._settled is None:
            self._settled = "ack"
            await self._ack()

    async def nack(self, delay: float | None = None) -> None:
        """Refuse for now: deliver again after ``delay`` seconds (at once when None)."""
        if delay is not None and delay < 0:
            raise ValueError(f"nack delay must be >= 0 seconds, got {delay!r}")
        if self._settled is None:
            self._settled = "nack"
            await self._nack(delay)

    async def term(self, reason: str | None = None) -> None:
        """Give up on the message: it is never delivered again (``reason`` is recorded)."""
        if self._settled is None:
            self._settled = "term"
            await self._term(reason)

    async def in_progress(self) -> None:
        """Tell the broker the handler is still working: restart the ack timer."""
        if self._settled is None:
            await self._in_progress()

    @abstractmethod
    async def _ack(self) -> None: ...

    @abstractmethod
    async def _nack(self, delay: float | None) -> None: ...

    @abstractmethod
    async def _term(self, reason: str | None) -> None: ...

    @abstractmethod
    async def _in_progress(self) -> None: ...
