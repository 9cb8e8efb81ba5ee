"""Deliveries in transit: those the fault injector delays, holds back or duplicates.

A consumer hands its workers what has arrived here before anything new. A delayed delivery
arrives after ``delay_seconds``; a held one goes right after the delivery that overtook it
(or after ``reorder_hold`` seconds if none comes); a duplicate arrives right after the
original. Nothing here runs unless the injector is active.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aclbus.backends.memory.clock import Clock, Timer
    from aclbus.backends.memory.delivery import StreamReceived
    from aclbus.backends.memory.faults import FaultInjector

__all__ = ["InTransit"]


class InTransit:
    """The deliveries of one consumer that the fault injector has put on a detour.

    Args:
        clock: The engine's clock.
        injector: The engine's fault injector.
        storm: Called when a delivery sets off a redelivery storm.
        arrived: Called when a delivery arrives late (a worker may be waiting for it).

    Attributes:
        arrivals: Deliveries that have arrived, to be handed over first, in order.
        held: The delivery held back to be reordered, if any.
    """

    __slots__ = (
        "_arrived",
        "_clock",
        "_held_timer",
        "_injector",
        "_stopped",
        "_storm",
        "arrivals",
        "held",
    )

    def __init__(
        self,
        clock: Clock,
        injector: FaultInjector,
        *,
        storm: Callable[[], None],
        arrived: Callable[[], None],
    ) -> None:
        self._clock = clock
        self._injector = injector
        self._storm = storm
        self._arrived = arrived
        self.arrivals: deque[StreamReceived] = deque()
        self.held: StreamReceived | None = None
        self._held_timer: Timer | None = None
        self._stopped = False

    def inject(self, delivery: StreamReceived) -> StreamReceived | None:
        """Apply the faults drawn for a new delivery; return it, or None if it took a detour."""
        injector = self._injector
        if not injector.applies(delivery.subject):
            return delivery
        faults = injector.faults
        if injector.storm():
            self._storm()
        if injector.delay():
            self._clock.call_later(faults.delay_seconds, lambda: self._arrive(delivery))
            return None
        if self.held is None and injector.reorder():
            self.held = delivery
            self._held_timer = self._clock.call_later(faults.reorder_hold, self.release_held)
            return None
        if injector.duplicate():
            self.arrivals.appendleft(delivery.duplicate())
        return delivery

    def release_held(self, *, first: bool = False) -> None:
        """Let the held delivery go: next in line (``first``), or last, as its hold ran out."""
        held, self.held = self.held, None
        if self._held_timer is not None:
            self._held_timer.cancel()
            self._held_timer = None
        if held is None or self._stopped:
            return
        if first:
            self.arrivals.appendleft(held)
        else:
            self.arrivals.append(held)
            self._arrived()

    def stop(self) -> None:
        """Cancel the hold timer for good: the consumer is deleted or its server shut down."""
        self._stopped = True
        if self._held_timer is not None:
            self._held_timer.cancel()
            self._held_timer = None

    def _arrive(self, delivery: StreamReceived) -> None:
        if self._stopped:
            return
        self.arrivals.append(delivery)
        self._arrived()
