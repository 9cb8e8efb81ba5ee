"""The consume side of one series: which number comes next, and what to do with each arrival.

A `Series` is what one agent knows of one publisher's series of one key: the number it
expects next, the numbers after it that are already done (messages of the key that went to a
handler that is not ordered), and, while a message is held back, since when and the lowest
number held. It decides, for each arrival, one `Verdict`:

- ``RUN``: it is the expected one: handle it (one at a time per key, which the caller ensures);
- ``HOLD``: it is ahead of its turn: let it wait, in the process or at the broker;
- ``DUPLICATE``: it is behind, already handled: ack it without handling it again;
- ``LATE``: it is behind because its number was declared missing: it came too late.

A number that does not come within the timeout is declared missing: a `Gap`, after which the
series goes on from the lowest number held. A series first seen past its first number (the
consumer restarted) waits ``start_timeout`` for lower ones, then starts from the lowest seen.

Nothing here awaits or reads a clock: the caller passes ``now``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from aclbus_ordering.keys import KeyKind

if TYPE_CHECKING:
    from aclbus.backend import Received
    from aclbus.clock import TimerClock

__all__ = ["Gap", "Series", "SeriesId", "Verdict"]

DONE_AHEAD_LIMIT = 4096
"""Numbers done ahead of the expected one kept at most: beyond, the hole before them is a gap."""

_SKIPPED_RANGES = 32
"""Declared-missing ranges remembered per series, to tell a late message from a duplicate."""


class Verdict(Enum):
    """What to do with an arrival (see the module's docstring)."""

    RUN = "run"
    HOLD = "hold"
    DUPLICATE = "duplicate"
    LATE = "late"


@dataclass(frozen=True, slots=True)
class SeriesId:
    """Which series: of which agent, sender, subject and key.

    Attributes:
        agent: The agent receiving it.
        sender: The sender numbering it.
        subject: The subject it is published on.
        kind: The key kind.
        key: The key's value.
        series: The publisher's series id (``<epoch>-<generation>``).
    """

    agent: str
    sender: str
    subject: str
    kind: KeyKind
    key: str
    series: str


@dataclass(frozen=True, slots=True)
class Gap:
    """Messages of a key declared missing: the key went on without them.

    Attributes:
        agent: The agent whose handler was waiting.
        sender: Who numbered the series.
        subject: The subject of the series.
        kind: ``routing_key`` or ``conversation``.
        key: The key's value.
        series: The publisher's series id.
        first: The first missing number.
        last: The last missing number.
        missing: How many numbers in ``first..last`` are missing (some may have been done).
        waited: Seconds the key waited for them.
        reason: ``timeout`` (``gap_timeout`` passed), ``deliveries`` (the held message was on
            its last delivery) or ``overflow`` (too many later messages were done meanwhile).
    """

    agent: str
    sender: str
    subject: str
    kind: KeyKind
    key: str
    series: str
    first: int
    last: int
    missing: int
    waited: float
    reason: str


class Series:
    """What one agent knows of one series (see the module's docstring).

    Args:
        ident: Which series.

    Attributes:
        ident: Which series.
        expected: The number to handle next; None until the series' start is known.
        resumed: True once the series started past its first number (after `start_timeout`).
    """

    __slots__ = (
        "_attempts",
        "_done_ahead",
        "_doubt",
        "_gap",
        "_lowest",
        "_running",
        "_since",
        "_skipped",
        "_waiters",
        "expected",
        "ident",
        "resumed",
    )

    def __init__(self, ident: SeriesId) -> None:
        self.ident = ident
        self.expected: int | None = None
        self.resumed = False
        self._done_ahead: set[int] = set()
        self._since: float | None = None  # when the current wait for `expected` began
        self._lowest: int | None = None  # lowest number held back since then
        self._skipped: deque[tuple[int, int]] = deque(maxlen=_SKIPPED_RANGES)
        self._doubt: tuple[int, int, Received] | None = None  # (seq, attempt, delivery)
        self._gap: Gap | None = None  # declared, not yet reported to a handled message
        self._waiters: list[asyncio.Future[None]] = []
        self._attempts: dict[int, int] = {}  # highest delivery seen of each held number
        self._running: int | None = None  # the number whose handler runs now

    def __repr__(self) -> str:
        ident = self.ident
        return f"<Series {ident.kind}={ident.key!r} {ident.series} next={self.expected}>"

    # -- deciding --------------------------------------------------------------------------

    def classify(
        self,
        seq: int,
        attempt: int,
        now: float,
        *,
        gap_timeout: float,
        start_timeout: float,
    ) -> tuple[Verdict, list[Gap]]:
        """Decide what to do with delivery ``attempt`` of message ``seq``.

        Returns:
            The verdict, and the gaps declared on the way (to be reported).
        """
        gaps: list[Gap] = []
        if self.expected is None and not self._start(seq, attempt, now, start_timeout):
            return Verdict.HOLD, gaps
        self._advance()
        expected = self.expected
        assert expected is not None
        if seq < expected:
            late = any(lo <= seq <= hi for lo, hi in self._skipped)
            return (Verdict.LATE if late else Verdict.DUPLICATE), gaps
        if seq == expected:
            doubt = self._doubt
            if doubt is not None and attempt <= doubt[1]:
                return Verdict.HOLD, gaps  # its failed delivery is still being settled
            self._doubt = None
            return Verdict.RUN, gaps
        self._hold(seq, now, attempt)
        since = self._since
        if since is not None and now - since >= gap_timeout and self._running != expected:
            gaps.extend(self._declare(self._lowest or seq, now, "timeout"))
            if seq == self.expected:
                return Verdict.RUN, gaps
            self._hold(seq, now, attempt)
        return Verdict.HOLD, gaps

    def force(self, seq: int, now: float) -> list[Gap]:
        """Declare everything before ``seq`` missing, so that ``seq`` runs next.

        For a held message on its last delivery: held back once more, the broker would give
        it up.
        """
        if self.expected is None:
            self._adopt(seq)
            return []
        if seq <= self.expected:
            return []
        return self._declare(seq, now, "deliveries")

    def deadline(self, *, gap_timeout: float, start_timeout: float) -> float | None:
        """When the current wait ends in a gap (or a start), or None if nothing waits."""
        if self._since is None:
            return None
        return self._since + (start_timeout if self.expected is None else gap_timeout)

    def superseded(self, seq: int, attempt: int) -> bool:
        """Whether a later delivery of held message ``seq`` than ``attempt`` was seen.

        Such a stale copy (a broker's redelivery storm makes them) is best left unsettled:
        handing it back would spend a delivery of the message that the newer copy still needs.
        """
        return self._attempts.get(seq, 0) > attempt

    def take_gap(self) -> Gap | None:
        """The gap declared since the last handled message, once."""
        gap, self._gap = self._gap, None
        return gap

    # -- outcomes --------------------------------------------------------------------------

    def run(self, seq: int) -> None:
        """Message ``seq`` starts running: however long it takes, it is not missing."""
        self._running = seq

    def done(self, seq: int) -> None:
        """Message ``seq`` ran and is settled (acked, or given up): the next one may run."""
        self._running = None
        if self.expected == seq:
            self._doubt = None
            self.expected = seq + 1
            self._moved()

    def retrying(self, seq: int) -> None:
        """Message ``seq`` ran and was handed back (``nack``): it comes again, wait for it."""
        self._running = None
        if self.expected == seq:
            self._since = self._lowest = None

    def failed(self, seq: int, attempt: int, received: Received) -> None:
        """Message ``seq`` raised: an outer layer settles it; until then it is in doubt."""
        self._running = None
        if self.expected == seq:
            self._doubt = (seq, attempt, received)
            self._since = self._lowest = None

    def passed(self, seq: int, now: float, *, gap_timeout: float) -> list[Gap]:
        """Message ``seq`` of this series went to a handler that is not ordered.

        Its number is done at once, so that ordered messages after it need not wait for it.

        Returns:
            The gaps declared on the way.
        """
        expected = self.expected
        if expected is None:
            if seq == 1:
                self.expected = 2
                self._moved()
            else:
                self._done_ahead.add(seq)
            return []
        if seq < expected:
            return []
        if seq == expected:
            self.expected = seq + 1
            self._moved()
            return []
        self._done_ahead.add(seq)
        if len(self._done_ahead) > DONE_AHEAD_LIMIT:
            return self._declare(min(self._done_ahead), now, "overflow")
        since = self._since
        if since is not None and now - since >= gap_timeout and self._running != expected:
            upto = min(self._done_ahead)
            if self._lowest is not None:
                upto = min(upto, self._lowest)
            return self._declare(upto, now, "timeout")
        return []

    # -- waiting in the process ------------------------------------------------------------

    async def changed(self, timeout: float, clock: TimerClock) -> None:
        """Wait until the expected number moves, or ``timeout`` seconds on ``clock``."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        timer = clock.call_later(timeout, wake)
        try:
            await future
        finally:
            timer.cancel()
            if future in self._waiters:
                self._waiters.remove(future)

    # -- internals -------------------------------------------------------------------------

    def _start(self, seq: int, attempt: int, now: float, start_timeout: float) -> bool:
        """For a series whose start is unknown: is it known now?"""
        if seq == 1 or 1 in self._done_ahead:
            self.expected = 1
            return True
        self._hold(seq, now, attempt)
        since = self._since
        if since is not None and now - since >= start_timeout:
            lowest = self._lowest if self._lowest is not None else seq
            self._adopt(min(lowest, min(self._done_ahead, default=lowest)))
            return True
        return False

    def _adopt(self, start: int) -> None:
        """Start the series at ``start``: what came before is history this process never saw."""
        self.expected = start
        self.resumed = True
        if start > 1:
            self._skipped.append((1, start - 1))
        self._since = self._lowest = None
        self._notify()

    def _hold(self, seq: int, now: float, attempt: int) -> None:
        attempts = self._attempts
        if attempts.get(seq, 0) < attempt and len(attempts) < DONE_AHEAD_LIMIT:
            attempts[seq] = attempt
        if self._since is None:
            self._since = now
            self._lowest = seq
        elif self._lowest is None or seq < self._lowest:
            self._lowest = seq

    def _advance(self) -> None:
        """Move past numbers already done, and past a doubtful one that was settled."""
        moved = False
        doubt = self._doubt
        if doubt is not None:
            seq, _, received = doubt
            settled = received.settled
            if seq != self.expected or settled == "nack":
                self._doubt = None  # stale, or handed back: it comes again
            elif settled is not None:
                self._doubt = None  # acked, or given up (dead-lettered): done
                self.expected = seq + 1
                moved = True
        done = self._done_ahead
        while self.expected in done:
            done.discard(self.expected)
            self.expected += 1
            moved = True
        if moved:
            self._moved()

    def _moved(self) -> None:
        self._since = self._lowest = None
        done = self._done_ahead
        expected = self.expected
        if done and expected is not None:
            while expected in done:
                done.discard(expected)
                expected += 1
            self.expected = expected
        if self._attempts and expected is not None:
            self._attempts = {s: a for s, a in self._attempts.items() if s > expected}
        self._notify()

    def _declare(self, upto: int, now: float, reason: str) -> list[Gap]:
        """Declare the numbers from the expected one to ``upto - 1`` missing (bar those done)."""
        expected = self.expected
        assert expected is not None
        if upto <= expected:
            return []
        ranges: list[tuple[int, int]] = []
        cursor = expected
        for seq in sorted(s for s in self._done_ahead if s < upto):
            if seq > cursor:
                ranges.append((cursor, seq - 1))
            cursor = seq + 1
        if cursor < upto:
            ranges.append((cursor, upto - 1))
        self._done_ahead = {s for s in self._done_ahead if s >= upto}
        self._skipped.extend(ranges)
        waited = now - self._since if self._since is not None else 0.0
        self.expected = upto
        self._moved()
        if not ranges:
            return []
        ident = self.ident
        gap = Gap(
            agent=ident.agent,
            sender=ident.sender,
            subject=ident.subject,
            kind=ident.kind,
            key=ident.key,
            series=ident.series,
            first=ranges[0][0],
            last=ranges[-1][1],
            missing=sum(hi - lo + 1 for lo, hi in ranges),
            waited=waited,
            reason=reason,
        )
        self._gap = gap
        return [gap]

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(None)
