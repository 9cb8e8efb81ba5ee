"""Deliveries waiting for their ack, and their ack deadlines: one heap, one timer per consumer.

Every delivery a consumer makes stays `Pending` until it is acked or terminated. Its ack
deadline (or the time of its delayed redelivery) sits in the consumer's `AckDeadlines`, a heap
with one clock timer for the earliest entry, so a delivery costs no timer of its own. Moving a
deadline bumps the delivery's ``token``: older heap entries for it then read as stale and are
dropped when they reach the top.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aclbus.backends.memory.clock import Clock, Timer

__all__ = ["AckDeadlines", "Pending"]


class Pending:
    """A message delivered and not yet acked: its delivery count and ack deadline.

    Attributes:
        seq: The message's sequence in the stream.
        deliveries: How many times it was delivered.
        deadline: When its ack deadline (or delayed redelivery) falls due, on `Clock.now`.
        token: Bumped whenever the deadline moves, so that the heap's older entries are stale.
        queued: Whether it waits in the redelivery queue (then no deadline runs).
    """

    __slots__ = ("deadline", "deliveries", "queued", "seq", "token")

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.deliveries = 1
        self.deadline = 0.0
        self.token = 0
        self.queued = False


class AckDeadlines:
    """The deadlines of a consumer's pending deliveries, and the one timer for the earliest.

    Args:
        clock: The engine's clock.
        pending: The consumer's pending deliveries by sequence (shared, not copied: an entry
            it no longer holds is a stale deadline).
        on_due: Called with each delivery whose deadline has passed.
        after_due: Called once after the deliveries due at a timer were handed to ``on_due``.
    """

    __slots__ = (
        "_after_due",
        "_clock",
        "_heap",
        "_on_due",
        "_pending",
        "_stopped",
        "_timer",
        "_timer_when",
    )

    def __init__(
        self,
        clock: Clock,
        pending: dict[int, Pending],
        *,
        on_due: Callable[[Pending], None],
        after_due: Callable[[], None],
    ) -> None:
        self._clock = clock
        self._pending = pending
        self._on_due = on_due
        self._after_due = after_due
        self._heap: list[tuple[float, int, int]] = []
        self._timer: Timer | None = None
        self._timer_when = 0.0
        self._stopped = False

    def set(self, p: Pending, deadline: float) -> None:
        """Make ``deadline`` the deadline of ``p`` (any earlier one no longer counts)."""
        p.token += 1
        p.deadline = deadline
        heapq.heappush(self._heap, (deadline, p.seq, p.token))
        if self._timer is None or deadline < self._timer_when:
            self._arm()

    def prune(self) -> None:
        """Drop the stale entries at the top of the heap (and rebuild it once they dominate)."""
        heap = self._heap
        pending = self._pending
        while heap:
            _, seq, token = heap[0]
            p = pending.get(seq)
            if p is not None and p.token == token:
                break
            heapq.heappop(heap)
        # Acks out of order leave stale entries inside the heap: rebuild once they dominate.
        if len(heap) > 2 * len(pending) + 256:
            live = [(p.deadline, p.seq, p.token) for p in pending.values() if not p.queued]
            heapq.heapify(live)
            self._heap = live

    def stop(self) -> None:
        """Cancel the timer for good: the consumer is deleted or its server shut down."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self) -> None:
        heap = self._heap
        if not heap or self._stopped:
            return
        when = heap[0][0]
        if self._timer is not None:
            if self._timer_when <= when:
                return  # it fires first, then re-arms for what is left
            self._timer.cancel()
        self._timer_when = when
        self._timer = self._clock.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._stopped:
            return
        # A loop may fire a timer a hair early: whatever was due when it was set is due now.
        now = max(self._clock.now(), self._timer_when)
        heap = self._heap
        pending = self._pending
        due = False
        while heap and heap[0][0] <= now:
            _, seq, token = heapq.heappop(heap)
            p = pending.get(seq)
            if p is None or p.token != token:
                continue
            self._on_due(p)
            due = True
        self.prune()
        self._arm()
        if due:
            self._after_due()
