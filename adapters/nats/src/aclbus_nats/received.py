"""Deliveries from NATS: JetStream acks are sent straight to the message's ack subject."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import orjson

from aclbus.backend import DeliveryMode, Received

if TYPE_CHECKING:
    from nats.aio.client import Client

__all__ = ["CoreReceived", "JetStreamReceived", "parse_ack_subject"]

_ACK = b"+ACK"
_NAK = b"-NAK"
_TERM = b"+TERM"
_WPI = b"+WPI"


def parse_ack_subject(reply: str) -> tuple[str, int, int]:
    """``(stream, delivered count, stream sequence)`` from a JetStream ack subject.

    Both forms are read: ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>``
    and the newer one with domain and account hash after ``$JS.ACK``.

    Raises:
        ValueError: Not a JetStream ack subject.
    """
    tokens = reply.split(".")
    if len(tokens) == 9:
        return tokens[2], int(tokens[4]), int(tokens[5])
    if len(tokens) >= 12:
        return tokens[4], int(tokens[6]), int(tokens[7])
    raise ValueError(f"not a JetStream ack subject: {reply!r}")


class JetStreamReceived(Received):
    """A JetStream delivery; settling it publishes to its ack subject (no round trip)."""

    __slots__ = ("_ack_subject", "_nc")

    def __init__(
        self,
        nc: Client,
        subject: str,
        headers: Mapping[str, str],
        body: bytes,
        ack_subject: str,
    ) -> None:
        stream, delivered, sequence = parse_ack_subject(ack_subject)
        super().__init__(
            subject,
            headers,
            body,
            attempt=delivered,
            sequence=sequence,
            mode=DeliveryMode.AT_LEAST_ONCE,
            stream=stream,
        )
        self._nc = nc
        self._ack_subject = ack_subject

    async def _ack(self) -> None:
        await self._nc.publish(self._ack_subject, _ACK)

    async def _nack(self, delay: float | None) -> None:
        payload = _NAK
        if delay:
            payload += b" " + orjson.dumps({"delay": int(delay * 1_000_000_000)})
        await self._nc.publish(self._ack_subject, payload)

    async def _term(self, reason: str | None) -> None:
        payload = _TERM
        if reason:
            # The server shows the reason in its TERMINATED advisory (nats-server >= 2.10).
            payload += b" " + reason.encode("utf-8", "replace")[:1024]
        await self._nc.publish(self._ack_subject, payload)

    async def _in_progress(self) -> None:
        await self._nc.publish(self._ack_subject, _WPI)


class CoreReceived(Received):
    """A core NATS delivery (``at_most_once``): nothing to acknowledge."""

    __slots__ = ()

    def __init__(
        self, subject: str, headers: Mapping[str, str], body: bytes, reply: str | None
    ) -> None:
        super().__init__(subject, headers, body, reply=reply, mode=DeliveryMode.AT_MOST_ONCE)

    async def _ack(self) -> None:
        return None

    async def _nack(self, delay: float | None) -> None:
        return None

    async def _term(self, reason: str | None) -> None:
        return None

    async def _in_progress(self) -> None:
        return None
