"""Claims: the record, in a KV bucket, that an agent is running or has run a message.

One entry per agent and message id (`claim_key`), in a bucket whose TTL is the dedup window.
Every write after the first is a compare-and-set on the revision read, so of two consumers
that race for one key exactly one wins::

    (absent) ──create──▶ processing(owner, deadline) ──update──▶ done
                              │       ▲
                      update  │       │ update: a later delivery, once the deadline has passed
                              ▼       │ (the claimant died or hung) or once released
                          released ───┘

- ``processing`` with a deadline still ahead: another consumer runs the message now; the
  delivery is nacked until about that deadline.
- ``done``: the handler finished; every later copy is acked without running it, until the
  entry expires (the window).
- ``released``: the handler failed or asked for a retry; the next delivery claims it again.
  (A release is a compare-and-set write rather than a delete: the `KeyValue` contract has no
  conditional delete, and an unconditional one could erase the claim of a consumer that has
  just taken over.)

Deadlines are wall-clock seconds from the claimant's clock (`time.time`, or the memory
engine's clock in tests), so the claim timeout must be far above the clock skew between hosts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from aclbus.backend import KeyValue, KVConflict, KVEntry
from aclbus_dedup.stats import DedupStats

__all__ = ["Claim", "Claims", "Outcome", "Record", "Status", "claim_key", "default_owner"]

log = logging.getLogger("aclbus.dedup")

MIN_WAIT = 0.1
"""Shortest nack delay for a delivery that finds its message busy, in seconds."""
MAX_RACES = 5
"""Create/read/update rounds one delivery tries before it counts the key as busy."""

_TOKEN = re.compile(r"[-_A-Za-z0-9]{1,128}")  # no "=": hashed tokens start with "h="


class Status(StrEnum):
    """The state of a claim record."""

    PROCESSING = "processing"
    DONE = "done"
    RELEASED = "released"


class Outcome(StrEnum):
    """What a delivery found when it tried to claim its message."""

    CLAIMED = "claimed"
    """Nobody had it (or it was released): run the handler."""
    TAKEN_OVER = "taken_over"
    """A claim whose deadline had passed: its claimant is dead; run the handler."""
    DONE = "done"
    """The handler already ran: ack without running it."""
    BUSY = "busy"
    """Another consumer runs it now: nack with a delay."""


@dataclass(frozen=True, slots=True)
class Record:
    """The value of a claim entry.

    Attributes:
        status: Its state.
        owner: Who wrote it (host, process id and a random suffix per bus).
        deadline: For ``processing``: wall-clock seconds after which the claim is stale.
    """

    status: Status
    owner: str = ""
    deadline: float = 0.0

    def encode(self) -> bytes:
        """The record as compact JSON."""
        value: dict[str, object] = {"s": self.status.value, "o": self.owner}
        if self.status is Status.PROCESSING:
            value["d"] = round(self.deadline, 3)
        return json.dumps(value, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Record | None:
        """Read a record; None if ``raw`` is not one (a foreign or damaged value)."""
        try:
            value = json.loads(raw)
            return cls(Status(value["s"]), str(value.get("o", "")), float(value.get("d", 0.0)))
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


def claim_key(agent: str, message_id: str) -> str:
    """The KV key of ``agent``'s claim on ``message_id``: ``{agent}.{message_id}``.

    Both are validated ids already (``[A-Za-z0-9_-]``, at most 128 characters), which are
    valid KV key tokens; anything else (a foreign message) is hashed into one.
    """
    return f"{_token(agent)}.{_token(message_id)}"


def _token(value: str) -> str:
    if _TOKEN.fullmatch(value):
        return value
    return "h=" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def default_owner() -> str:
    """An owner name for one bus: ``host:pid:random``, so a record tells who claimed it."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Claims:
    """The claims of one bus, in one bucket.

    Args:
        kv: The bucket (provisioned with the window as its TTL).
        timeout: Seconds a claim holds before it counts as stale.
        now: Wall-clock seconds (``time.time`` or the engine's clock).
        stats: Counters to update.
        owner: The name written into this bus' records.
    """

    def __init__(
        self,
        kv: KeyValue,
        *,
        timeout: float,
        now: Callable[[], float],
        stats: DedupStats,
        owner: str | None = None,
    ) -> None:
        self.kv = kv
        self.timeout = timeout
        self.now = now
        self.stats = stats
        self.owner = owner or default_owner()

    def _processing(self) -> tuple[Record, float]:
        deadline = self.now() + self.timeout
        return Record(Status.PROCESSING, self.owner, deadline), deadline

    async def acquire(self, agent: str, message_id: str) -> Claim:
        """Claim ``agent``'s run of ``message_id``, or say why not.

        Raises:
            Exception: The bucket could not be read or written (not `KVConflict`: a lost race
                is handled here).
        """
        key = claim_key(agent, message_id)
        kv = self.kv
        for _ in range(MAX_RACES):
            mine, deadline = self._processing()
            try:
                revision = await kv.create(key, mine.encode())
            except KVConflict:
                pass
            else:
                self.stats.claimed += 1
                return Claim(self, key, Outcome.CLAIMED, revision, deadline)
            entry = await kv.get(key)
            if entry is None:
                continue  # released by a delete or expired between the two calls
            found = await self._judge(entry, key, message_id)
            if found is not None:
                return found
            try:
                revision = await kv.update(key, mine.encode(), entry.revision)
            except KVConflict:
                continue  # someone else moved first: look again
            record = Record.decode(entry.value)
            if record is not None and record.status is Status.RELEASED:
                self.stats.claimed += 1
                return Claim(self, key, Outcome.CLAIMED, revision, deadline)
            self.stats.taken_over += 1
            log.warning(
                "dedup: %s: taking over the stale claim of %s (its claimant died or hung)",
                key,
                record.owner if record is not None else "an unreadable record",
            )
            return Claim(self, key, Outcome.TAKEN_OVER, revision, deadline)
        return Claim(self, key, Outcome.BUSY, wait=MIN_WAIT)

    async def _judge(self, entry: KVEntry, key: str, message_id: str) -> Claim | None:
        """A `Claim` for a record that stops this delivery (done, busy); None to take it."""
        record = Record.decode(entry.value)
        if record is None:
            log.warning("dedup: %s holds an unreadable record; replacing it", key)
            return None
        if record.status is Status.DONE:
            return Claim(self, key, Outcome.DONE)
        if record.status is Status.PROCESSING:
            left = record.deadline - self.now()
            if left > 0:
                return Claim(self, key, Outcome.BUSY, wait=min(max(left, MIN_WAIT), self.timeout))
        return None


class Claim:
    """What one delivery got from `Claims.acquire`; when held, finish or release it once.

    Attributes:
        key: The KV key.
        outcome: What the delivery found.
        revision: The revision of this delivery's record, while it holds the claim.
        deadline: When the held claim goes stale (wall-clock seconds).
        wait: For ``BUSY``: seconds until the other claim's deadline, the nack delay.
    """

    __slots__ = ("_claims", "_held", "deadline", "key", "outcome", "revision", "wait")

    def __init__(
        self,
        claims: Claims,
        key: str,
        outcome: Outcome,
        revision: int = 0,
        deadline: float = 0.0,
        *,
        wait: float = 0.0,
    ) -> None:
        self._claims = claims
        self.key = key
        self.outcome = outcome
        self.revision = revision
        self.deadline = deadline
        self.wait = wait
        self._held = outcome in (Outcome.CLAIMED, Outcome.TAKEN_OVER)

    @property
    def held(self) -> bool:
        """True while this delivery holds the claim (not finished, released or lost)."""
        return self._held

    async def finish(self) -> None:
        """Record the message as done (before its ack goes out). Never raises."""
        if self._held:
            self._held = False
            await self._write(Record(Status.DONE, self._claims.owner), "finish")

    async def release(self) -> None:
        """Give the claim back so that a retry runs the handler. Never raises."""
        if self._held:
            self._held = False
            if await self._write(Record(Status.RELEASED, self._claims.owner), "release"):
                self._claims.stats.released += 1

    async def extend(self) -> None:
        """Push the deadline out (the handler said it is still working). Never raises.

        Writes only once half the claim timeout has passed, so a handler may call
        ``in_progress()`` often without a KV write each time.
        """
        claims = self._claims
        if not self._held or self.deadline - claims.now() > claims.timeout / 2:
            return
        mine, deadline = claims._processing()
        if await self._write(mine, "extend"):
            self.deadline = deadline

    async def _write(self, record: Record, what: str) -> bool:
        claims = self._claims
        try:
            self.revision = await claims.kv.update(self.key, record.encode(), self.revision)
        except KVConflict:
            self._held = False
            claims.stats.lost += 1
            log.warning(
                "dedup: %s: could not %s the claim: another consumer took it over after its "
                "claim timeout, so this message ran twice (raise ACLBUS_DEDUP__CLAIM_TIMEOUT, "
                "or call in_progress() from long handlers)",
                self.key,
                what,
            )
            return False
        except Exception as exc:
            claims.stats.kv_errors += 1
            log.warning(
                "dedup: %s: could not %s the claim: %s: %s", self.key, what, type(exc).__name__, exc
            )
            return False
        return True
