"""Claims: the record, in a KV bucket, that an agent is running or has run a message.

One entry per agent and message id (`claim_key`), in a bucket whose TTL is the dedup window.
Every write after the first is a compare-and-set on the revision read, so of two consumers
that race for one key exactly one wins:

```python
(absent) ──create──▶ processing(owner, deadline) ──update──▶ done
                          │       ▲
                  update  │       │ update: a later delivery, once the deadline has passed
                          ▼       │ (the claimant died or hung) or once released
                      released ───┘
```

- ``processing`` with a deadline still ahead: another consumer runs the message now; the
  delivery is nacked until about that deadline.
- ``done``: the handler finished; every later copy is acked without running it, until the
  entry expires (the window).
- ``released``: the handler failed or asked for a retry; the next delivery claims it again.
  (A release is a compare-and-set write rather than a delete: the `KeyValue` contract has no
  conditional delete, and an unconditional one could erase the claim of a consumer that has
  just taken over.)

Every record a claim writes carries its *token*, unique to that claim. A write whose reply
is lost (the bucket stored it, the client timed out) is ambiguous; when the claim next meets
its own token in the record, the write had landed: a retried create adopts its own claim
instead of waiting for it to go stale, and a retried ``done`` is a success, not a takeover.

A ``done`` write that fails is retried (see `Claim.finish`); one that still fails is handed to
`aclbus_dedup.unfinished.Unfinished`, which goes on in the background.

Deadlines are wall-clock seconds from the claimant's clock (`time.time`, or the memory
engine's clock in tests), so the claim timeout must be far above the clock skew between hosts.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import logging
import os
import re
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Protocol

from aclbus.backend import KeyValue, KVConflict, KVEntry, Received
from aclbus.dlq import redact
from aclbus_dedup.outage import KeepAlive, Outage
from aclbus_dedup.stats import DedupStats

__all__ = [
    "Claim",
    "Claims",
    "DoneLater",
    "Outcome",
    "Record",
    "Status",
    "Written",
    "claim_key",
    "default_owner",
    "new_token",
]

log = logging.getLogger("aclbus.dedup")

MIN_WAIT = 0.1
"""Shortest nack delay for a delivery that finds its message busy, in seconds."""
MAX_RACES = 5
"""Create/read/update rounds one delivery tries before it counts the key as busy."""

_TOKEN = re.compile(r"[-_A-Za-z0-9]{1,128}")  # no "=": hashed tokens start with "h="
_CLAIM_TOKENS = itertools.count(1)


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


class Written(Enum):
    """How a write of a held claim ended."""

    WRITTEN = "written"
    """The record is in the bucket."""
    LOST = "lost"
    """Another consumer took the claim over: the record is not this claim's any more."""
    FAILED = "failed"
    """The bucket did not answer: nobody knows yet (retry)."""


@dataclass(frozen=True, slots=True)
class Record:
    """The value of a claim entry.

    Attributes:
        status: Its state.
        owner: Who wrote it (host, process id and a random suffix per bus).
        deadline: For ``processing``: wall-clock seconds after which the claim is stale.
        token: The claim that wrote it (see `new_token`); not part of equality, so a record
            compares by what it says, not by which claim said it.
    """

    status: Status
    owner: str = ""
    deadline: float = 0.0
    token: str = field(default="", compare=False)

    def encode(self) -> bytes:
        """The record as compact JSON: what ``json.dumps(separators=(",", ":"))`` writes.

        Built by hand because it is written twice per delivery, and ``json.dumps`` with
        separators makes a pure-Python encoder on each call (about 7 µs here).
        """
        text = f'{{"s":"{self.status.value}","o":{_quoted_owner(self.owner)}'
        if self.status is Status.PROCESSING:
            text += f',"d":{round(self.deadline, 3)!r}'  # json writes a float as its repr
        if self.token:
            text += f',"t":{_quoted(self.token)}'
        return (text + "}").encode()

    @classmethod
    def decode(cls, raw: bytes) -> Record | None:
        """Read a record; None if ``raw`` is not one (a foreign or damaged value)."""
        try:
            value = json.loads(raw)
            return cls(
                Status(value["s"]),
                str(value.get("o", "")),
                float(value.get("d", 0.0)),
                str(value.get("t", "")),
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return None

    def by(self, owner: str, token: str) -> bool:
        """Whether the claim ``token`` of ``owner`` wrote this record."""
        return bool(token) and self.token == token and self.owner == owner


def _quoted(text: str) -> str:
    """``text`` as a JSON string; ASCII letters and digits alone need no escaping."""
    return f'"{text}"' if text.isascii() and text.isalnum() else json.dumps(text)


# A process has a few owners (one per bus), written into every record: quote each once.
_quoted_owner = functools.lru_cache(maxsize=64)(_quoted)


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


def new_token() -> str:
    """A token for one claim: unique within the process, so with the owner everywhere."""
    return format(next(_CLAIM_TOKENS), "x")


class DoneLater(Protocol):
    """Where a ``done`` write that keeps failing goes on (`aclbus_dedup.unfinished.Unfinished`)."""

    def add(self, claim: Claim, done: Record, *, written: float) -> None:
        """Go on writing ``done`` for ``claim`` in the background."""


class Claims:
    """The claims of one bus, in one bucket.

    Args:
        kv: The bucket (provisioned with the window as its TTL).
        timeout: Seconds a claim holds before it counts as stale.
        now: Wall-clock seconds (``time.time`` or the engine's clock).
        stats: Counters to update.
        owner: The name written into this bus' records.
        outage: The bucket's reachability and the pauses between retries; None: a new one on
            ``now`` and `asyncio.sleep`.
        done_wait: Seconds into an outage during which a failed ``done`` write is retried
            before the ack (see `Claim.finish`).
        keep_alive: Seconds between two ``in_progress()`` of a delivery that waits for the
            bucket; None: a third of ``timeout``.
        unfinished: Where a ``done`` write that still fails after ``done_wait`` goes on in
            the background; None: it is given up (counted as ``abandoned``).
    """

    def __init__(
        self,
        kv: KeyValue,
        *,
        timeout: float,
        now: Callable[[], float],
        stats: DedupStats,
        owner: str | None = None,
        outage: Outage | None = None,
        done_wait: float = 10.0,
        keep_alive: float | None = None,
        unfinished: DoneLater | None = None,
    ) -> None:
        self.kv = kv
        self.timeout = timeout
        self.now = now
        self.stats = stats
        self.owner = owner or default_owner()
        self.outage = outage if outage is not None else Outage(kv.bucket, now=now)
        self.done_wait = done_wait
        self.keep_alive = keep_alive if keep_alive is not None else timeout / 3
        self.unfinished = unfinished

    def processing(self, token: str) -> tuple[Record, float]:
        """A ``processing`` record of this bus for ``token``, and its deadline (now + timeout)."""
        deadline = self.now() + self.timeout
        return Record(Status.PROCESSING, self.owner, deadline, token), deadline

    async def acquire(self, agent: str, message_id: str, *, token: str | None = None) -> Claim:
        """Claim ``agent``'s run of ``message_id``, or say why not.

        Args:
            agent: The agent.
            message_id: The message.
            token: The claim's token (`new_token`). A caller that retries after a failure
                passes the same one each time, so that a write of an earlier try whose reply
                was lost is recognised as this claim's own.

        Raises:
            Exception: The bucket could not be read or written (not `KVConflict`: a lost race
                is handled here).
        """
        key = claim_key(agent, message_id)
        token = token or new_token()
        kv = self.kv
        for _ in range(MAX_RACES):
            mine, deadline = self.processing(token)
            try:
                revision = await kv.create(key, mine.encode())
            except KVConflict:
                pass
            else:
                self.outage.answered()
                self.stats.claimed += 1
                return Claim(self, key, Outcome.CLAIMED, revision, deadline, token=token)
            entry = await kv.get(key)
            self.outage.answered()
            if entry is None:
                continue  # released by a delete or expired between the two calls
            found = self._judge(entry, key, token)
            if found is not None:
                if found.held:  # its own claim, from a try whose reply was lost: it may be old
                    await found.extend()
                return found
            try:
                revision = await kv.update(key, mine.encode(), entry.revision)
            except KVConflict:
                continue  # someone else moved first: look again
            record = Record.decode(entry.value)
            if record is not None and record.status is Status.RELEASED:
                self.stats.claimed += 1
                return Claim(self, key, Outcome.CLAIMED, revision, deadline, token=token)
            self.stats.taken_over += 1
            log.warning(
                "dedup: %s: taking over the stale claim of %s (its claimant died or hung)",
                key,
                record.owner if record is not None else "an unreadable record",
            )
            return Claim(self, key, Outcome.TAKEN_OVER, revision, deadline, token=token)
        return Claim(self, key, Outcome.BUSY, wait=MIN_WAIT)

    def _judge(self, entry: KVEntry, key: str, token: str) -> Claim | None:
        """A `Claim` for a record that stops this delivery (done, busy) or is its own.

        None: the record is free to take (released, stale or unreadable).
        """
        record = Record.decode(entry.value)
        if record is None:
            log.warning("dedup: %s holds an unreadable record; replacing it", key)
            return None
        if record.status is Status.DONE:
            return Claim(self, key, Outcome.DONE)
        if record.status is Status.PROCESSING:
            if record.by(self.owner, token):
                # An earlier try of this very claim wrote it, and its reply was lost.
                self.stats.claimed += 1
                return Claim(
                    self, key, Outcome.CLAIMED, entry.revision, record.deadline, token=token
                )
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
        token: The claim's token, written into each of its records.
    """

    __slots__ = ("_claims", "_held", "deadline", "key", "outcome", "revision", "token", "wait")

    def __init__(
        self,
        claims: Claims,
        key: str,
        outcome: Outcome,
        revision: int = 0,
        deadline: float = 0.0,
        *,
        wait: float = 0.0,
        token: str = "",
    ) -> None:
        self._claims = claims
        self.key = key
        self.outcome = outcome
        self.revision = revision
        self.deadline = deadline
        self.wait = wait
        self.token = token
        self._held = outcome in (Outcome.CLAIMED, Outcome.TAKEN_OVER)

    @property
    def held(self) -> bool:
        """True while this delivery holds the claim (not finished, released or lost)."""
        return self._held

    async def finish(self, received: Received | None = None) -> None:
        """Record the message as done, before its ack goes out. Never raises.

        If the bucket does not answer, the write is retried with a doubling pause (the
        plugin's ``kv_backoff`` up to ``kv_backoff_max``) while ``received`` is kept from
        redelivery with ``in_progress()``, until ``done_wait`` seconds after the outage began.
        If it still fails, the claim is left ``processing`` with its deadline, so that a
        redelivery meanwhile is nacked until that deadline, and the write is handed to
        `Claims.unfinished`, which goes on in the background; the caller then acks.

        Args:
            received: The delivery to keep while retrying; None: no retry before the ack.
        """
        if not self._held:
            return
        self._held = False
        claims = self._claims
        done = Record(Status.DONE, claims.owner, token=self.token)
        if await self.write(done, "finish") is not Written.FAILED:
            return
        outage = claims.outage
        give_up = (outage.since if outage.since is not None else claims.now()) + claims.done_wait
        if received is not None and claims.now() < give_up and not outage.stopped:
            async with KeepAlive(received, claims.keep_alive, outage.sleep):
                for pause in outage.pauses():
                    left = give_up - claims.now()
                    if left <= 0 or not await outage.pause(min(pause, left)):
                        break
                    if await self.write(done, "finish", retry=True) is not Written.FAILED:
                        return
        if claims.unfinished is not None:
            # The claim's record was last written when its deadline was set.
            claims.unfinished.add(self, done, written=self.deadline - claims.timeout)
        else:
            claims.stats.abandoned += 1
            log.warning(
                "dedup: %s: the done record is not written; the claim stays processing", self.key
            )

    async def release(self) -> None:
        """Give the claim back so that a retry runs the handler. Never raises."""
        if self._held:
            self._held = False
            released = Record(Status.RELEASED, self._claims.owner, token=self.token)
            if await self.write(released, "release") is Written.WRITTEN:
                self._claims.stats.released += 1

    async def extend(self) -> None:
        """Push the deadline out (the handler said it is still working). Never raises.

        Writes only once half the claim timeout has passed, so a handler may call
        ``in_progress()`` often without a KV write each time.
        """
        claims = self._claims
        if not self._held or self.deadline - claims.now() > claims.timeout / 2:
            return
        mine, deadline = claims.processing(self.token)
        if await self.write(mine, "extend") is Written.WRITTEN:
            self.deadline = deadline

    async def write(self, record: Record, what: str, *, retry: bool = False) -> Written:
        """Write ``record`` over this claim's revision (compare-and-set). Never raises.

        A conflict is looked into: if the record in the bucket is still this claim's own (a
        write of it whose reply was lost had landed), the write is done, or made again over
        the newer revision; otherwise another consumer took the claim over.

        Args:
            record: What to write.
            what: The operation, for the log (``finish``, ``release``, ``extend``).
            retry: Whether this is a retry (its failure is logged at debug level).
        """
        claims = self._claims
        kv = claims.kv
        value = record.encode()
        try:
            for _ in range(2):  # once more only over a revision of this claim's own
                try:
                    self.revision = await kv.update(self.key, value, self.revision)
                    break
                except KVConflict:
                    entry = await kv.get(self.key)
                    found = None if entry is None else Record.decode(entry.value)
                    if entry is None or found is None or not found.by(claims.owner, self.token):
                        return self._lost(what)
                    self.revision = entry.revision
                    if entry.value == value:
                        break  # this very write had landed; its reply was lost
            else:
                return self._lost(what)
        except Exception as exc:
            claims.stats.kv_errors += 1
            since = claims.outage.failed(exc)
            (log.debug if retry else log.warning)(
                "dedup: %s: could not %s the claim (%s: %s), the KV bucket out of reach for %.1f s",
                self.key,
                what,
                type(exc).__name__,
                redact(str(exc)),
                claims.now() - since,
            )
            return Written.FAILED
        claims.outage.answered()
        return Written.WRITTEN

    def _lost(self, what: str) -> Written:
        self._held = False
        self._claims.stats.lost += 1
        log.warning(
            "dedup: %s: could not %s the claim: another consumer took it over after its "
            "claim timeout, so this message ran twice (raise ACLBUS_DEDUP__CLAIM_TIMEOUT, "
            "or call in_progress() from long handlers)",
            self.key,
            what,
        )
        return Written.LOST
