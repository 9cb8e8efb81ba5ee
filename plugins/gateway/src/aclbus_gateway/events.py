"""The event stream: an agent's stored inbox messages, read in order from a position on.

An agent's inbox (and its priority lane) is kept in the bus' inbox stream whether or not
anyone consumes it, so the messages of an agent can be read back by their sequence in that
stream. That sequence is the event id: a client that comes back with the last id it saw
(``Last-Event-ID``) reads on from the next message, with no gap and no repeat, as long as
the stream still holds it (its ``max_age``, ``max_msgs`` and ``max_bytes``).
"""

from __future__ import annotations

from dataclasses import dataclass

from aclbus import ACLMessage, Bus, wire
from aclbus.errors import ACLDecodeError
from aclbus.specs import StoredMessage
from aclbus.subjects import TrafficClass

__all__ = ["AgentEvents", "Event"]


@dataclass(frozen=True, slots=True)
class Event:
    """One stored message of the agent, decoded, or the reason it could not be.

    Attributes:
        sequence: Its sequence in the inbox stream: the event id.
        message: The message; None when it could not be decoded.
        problem: Why it could not be decoded (the message is kept in the stream).
        subject: The subject it was stored under.
    """

    sequence: int
    message: ACLMessage | None
    problem: str | None
    subject: str


class AgentEvents:
    """The stored inbox messages of one agent.

    Args:
        bus: The gateway's bus (a persistent backend).
        agent: The agent.
        batch: Stored messages read per `after` call at most.
    """

    def __init__(self, bus: Bus, agent: str, *, batch: int) -> None:
        self._bus = bus
        self._stream = bus.subjects.stream(TrafficClass.INBOX)
        self._subjects = (bus.subjects.inbox(agent), bus.subjects.priority_inbox(agent))
        self._batch = batch

    async def last_sequence(self) -> int:
        """The sequence of the stream's last stored message (0 when empty): "now".

        Found with about ``2 * log2(last)`` reads of one message, since the backend contract
        reads from a sequence on but has no "last" (a doubling search, then a bisection).
        """
        read = self._bus.backend.read_stream
        first = await read(self._stream, start=1, limit=1)
        if not first:
            return 0
        low, high = first[0].sequence, 0  # low: a stored sequence; high: nothing at or after
        probe = max(low, 1)
        while not high:
            probe *= 2
            found = await read(self._stream, start=probe, limit=1)
            if found:
                low = found[0].sequence
            else:
                high = probe
        while high - low > 1:
            middle = (low + high) // 2
            found = await read(self._stream, start=middle, limit=1)
            if found:
                low = found[0].sequence
                if low >= high:  # stored meanwhile: the stream grew past the bound
                    high = low + 1
            else:
                high = middle
        return low

    async def after(self, sequence: int) -> list[Event]:
        """The agent's next stored messages after ``sequence``, in order (at most ``batch``)."""
        reads = [
            await self._bus.backend.read_stream(
                self._stream, subject=subject, start=sequence + 1, limit=self._batch
            )
            for subject in self._subjects
        ]
        # Two subjects, one stream: merge by sequence, and stop where a full read stopped,
        # since the other subject's messages past that point are not all read yet.
        bound = min((r[-1].sequence for r in reads if len(r) >= self._batch), default=None)
        merged = sorted((m for r in reads for m in r), key=lambda m: m.sequence)
        if bound is not None:
            merged = [m for m in merged if m.sequence <= bound]
        return [self._event(m) for m in merged[: self._batch]]

    def _event(self, stored: StoredMessage) -> Event:
        try:
            msg = wire.decode(
                stored.headers,
                stored.body,
                self._bus.codecs,
                max_bytes=self._bus.settings.max_message_bytes,
            )
        except ACLDecodeError as exc:
            return Event(stored.sequence, None, type(exc).__name__, stored.subject)
        return Event(stored.sequence, msg, None, stored.subject)
