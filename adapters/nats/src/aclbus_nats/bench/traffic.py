"""Steady traffic between two real agents, and the accounting of what happened to it.

`Traffic` sends one message after the other from a sender bus to an agent on a receiver
bus, at a steady pace, retrying each message (the same `ACLMessage`, so the same
``Nats-Msg-Id``) until JetStream acknowledges it, as a caller that must not lose work does.
It records when each PubAck came and every error a send raised. `Traffic.account` then reads
the stream and compares: acked = stored = handled (or dead-lettered), duplicates counted.
The cluster fault tests and the ``failover`` bench both run on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from dataclasses import dataclass, field

import nats
from nats.js.errors import NotFoundError

from aclbus import ACLMessage, Bus, Performative
from aclbus.errors import ACLBusError

__all__ = ["Accounting", "SendError", "Traffic"]

_RETRY_PAUSE = 0.05
"""Seconds between a failed send and its retry."""
_POLL = 0.05


@dataclass(frozen=True, slots=True)
class SendError:
    """One error a send raised (the message was then sent again).

    Attributes:
        at: `time.monotonic` when it was raised.
        took: Seconds the failed send took.
        kind: The exception's type name.
        text: Its message.
    """

    at: float
    took: float
    kind: str
    text: str


@dataclass(slots=True)
class Accounting:
    """What happened to the messages `Traffic` sent.

    Attributes:
        acked: Message ids JetStream acknowledged.
        stored: How often each message id is in the stream.
        handled: How often the receiving agent's handler ran for each message id.
        dead: Message ids dead-lettered instead of handled.
        duplicate_acks: PubAcks that said ``duplicate`` (a retry of a message already stored).
    """

    acked: set[str] = field(default_factory=set)
    stored: Counter[str] = field(default_factory=Counter)
    handled: Counter[str] = field(default_factory=Counter)
    dead: set[str] = field(default_factory=set)
    duplicate_acks: int = 0

    @property
    def lost(self) -> set[str]:
        """Acked message ids not stored, or neither handled nor dead-lettered."""
        return (self.acked - set(self.stored)) | (self.acked - set(self.handled) - self.dead)

    @property
    def duplicates_stored(self) -> int:
        """Extra stored copies (0 when deduplication by message id worked)."""
        return sum(n - 1 for n in self.stored.values())

    @property
    def duplicates_handled(self) -> int:
        """Extra handler runs: redeliveries of messages already handled."""
        return sum(n - 1 for n in self.handled.values())

    def problems(self) -> list[str]:
        """What is wrong: lost messages, stored duplicates, stored but never acked; or none."""
        found = []
        if self.lost:
            found.append(f"{len(self.lost)} acked but lost: {sorted(self.lost)[:5]}")
        if self.duplicates_stored:
            found.append(f"{self.duplicates_stored} duplicates stored")
        unacked = set(self.stored) - self.acked
        if unacked:
            found.append(f"{len(unacked)} stored but never acked: {sorted(unacked)[:5]}")
        return found

    def __str__(self) -> str:
        return (
            f"acked {len(self.acked)}, stored {sum(self.stored.values())}, handled "
            f"{sum(self.handled.values())} ({self.duplicates_handled} duplicates), dead "
            f"{len(self.dead)}, lost {len(self.lost)}, duplicate PubAcks {self.duplicate_acks}"
        )


class Traffic:
    """Messages from ``sender`` to the agent ``to`` on ``receiver``, one at a time, paced.

    Args:
        sender: A started bus that sends.
        receiver: A started bus that runs the receiving agent (may be ``sender``).
        rate: Messages per second at most.
        to: The receiving agent's id.
    """

    def __init__(self, sender: Bus, receiver: Bus, *, rate: float = 20.0, to: str = "sink") -> None:
        self._sender = sender
        self._receiver = receiver
        self._interval = 1.0 / rate
        self._to = to
        self.acks: list[float] = []
        """`time.monotonic` of each PubAck, in order."""
        self.errors: list[SendError] = []
        """Every error a send raised."""
        self._acked: set[str] = set()
        self._handled: Counter[str] = Counter()
        self._duplicate_acks = 0
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def subject(self) -> str:
        """The subject the messages are published on."""
        return self._receiver.subjects.inbox(self._to)

    async def start(self) -> None:
        """Start the receiving agent, then the sending loop."""
        agent = self._receiver.agent(self._to)

        @agent.on()
        async def handle(msg: ACLMessage) -> None:
            self._handled[msg.message_id] += 1

        await agent.start()
        self._task = asyncio.create_task(self._run(), name="aclbus-traffic")

    async def stop(self, timeout: float = 60.0) -> None:
        """Stop once the message being sent is acknowledged (at most ``timeout`` seconds)."""
        self._stopping.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, timeout)

    @property
    def handled(self) -> int:
        """Handler runs so far, redeliveries included."""
        return self._handled.total()

    def acks_between(self, start: float, end: float) -> int:
        """PubAcks that came between two `time.monotonic` instants."""
        return sum(start <= t < end for t in self.acks)

    async def next_ack_after(self, instant: float, timeout: float) -> float:
        """Seconds from ``instant`` to the first PubAck after it, waiting up to ``timeout``.

        Raises:
            TimeoutError: No PubAck came in time.
        """
        deadline = time.monotonic() + timeout
        while True:
            later = [t for t in self.acks[-50:] if t > instant]
            if later:
                return later[0] - instant
            if time.monotonic() > deadline:
                raise TimeoutError(f"no PubAck within {timeout} s")
            await asyncio.sleep(_POLL)

    def max_gap(self, start: float, end: float | None = None) -> float:
        """The longest pause between PubAcks from ``start`` to ``end`` (now, when None)."""
        end = time.monotonic() if end is None else end
        times = [start, *(t for t in self.acks if start <= t <= end), end]
        return max(b - a for a, b in itertools.pairwise(times))

    async def _run(self) -> None:
        sent = 0
        while not self._stopping.is_set():
            msg = ACLMessage(
                performative=Performative.INFORM,
                sender_id="source",
                receiver_id=self._to,
                payload=sent,
            )
            await self._send_until_acked(msg)
            sent += 1
            next_at = self.acks[-1] + self._interval
            pause = next_at - time.monotonic()
            if pause > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), pause)

    async def _send_until_acked(self, msg: ACLMessage) -> None:
        while True:
            started = time.monotonic()
            try:
                [ack] = await self._sender.send(msg)
            except ACLBusError as exc:
                now = time.monotonic()
                self.errors.append(SendError(now, now - started, type(exc).__name__, str(exc)))
                await asyncio.sleep(_RETRY_PAUSE)
                continue
            self.acks.append(time.monotonic())
            self._acked.add(msg.message_id)
            self._duplicate_acks += ack.duplicate
            return

    async def account(self, urls: list[str], timeout: float = 30.0) -> Accounting:
        """Wait until every acked message is handled or dead-lettered, then read the stream.

        Call it after `stop`, with the cluster whole again.

        Args:
            urls: The servers, to read the stream with a connection of its own.
            timeout: Seconds to wait for the handling.

        Returns:
            The accounting.
        """
        result = Accounting(acked=set(self._acked), duplicate_acks=self._duplicate_acks)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if result.acked <= set(self._handled):
                break
            try:
                letters = await self._receiver.dead_letters.list()
            except ACLBusError:
                # Right after a failover the DLQ stream may still be electing its leader.
                letters = []
            result.dead = {letter.message_id for letter in letters if letter.message_id}
            if result.acked <= set(self._handled) | result.dead:
                break
            await asyncio.sleep(0.2)
        result.handled = Counter(self._handled)
        result.stored = await _stored_ids(urls, self.subject)
        return result


async def _stored_ids(urls: list[str], subject: str) -> Counter[str]:
    """How often each Nats-Msg-Id is stored on ``subject``."""
    nc = await nats.connect(servers=urls, connect_timeout=5)
    try:
        js = nc.jetstream(timeout=5.0)
        deadline = time.monotonic() + 30
        while True:
            try:
                stream = await js.find_stream_name_by_subject(subject)
                info = await js.stream_info(stream)
                break
            except (TimeoutError, nats.errors.TimeoutError):
                # A meta or stream leader still being elected after a fault.
                if time.monotonic() > deadline:
                    raise
        ids: Counter[str] = Counter()
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            try:
                msg = await js.get_msg(stream, seq)
            except NotFoundError:
                continue  # a gap: deleted, or of another subject and purged
            if msg.subject == subject and msg.headers:
                ids[msg.headers.get("Nats-Msg-Id", "")] += 1
        return ids
    finally:
        await nc.close()
